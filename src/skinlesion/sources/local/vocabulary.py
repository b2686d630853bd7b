"""The archive's current vocabulary, and how the values of HAM10000 and of retired archive fields
(ISIC 2020's benign_malignant, diagnosis, anatom_site_general) translate to it. docs/labels.md has the table.
"""

from __future__ import annotations

B, I, M = "Benign", "Indeterminate", "Malignant"
MEL2 = "Malignant melanocytic proliferations (Melanoma)"
BCC2 = "Malignant adnexal epithelial proliferations - Follicular"
SCC2 = "Malignant epidermal proliferations"
NEV2 = "Benign melanocytic proliferations"
EPI2 = "Benign epidermal proliferations"
FIB2 = "Benign soft tissue proliferations - Fibro-histiocytic"
VASC2 = "Benign soft tissue proliferations - Vascular"

# HAM10000 dx -> (diagnosis_1, diagnosis_2, diagnosis_3, melanocytic). akiec (actinic keratosis /
# intraepithelial carcinoma = Bowen's disease) is read as squamous cell carcinoma in situ: malignant in
# the usual binary reading of HAM10000, and the squamous class of the five-class study.
HAM_DX = {
    "nv": (B, NEV2, "Nevus", True),
    "bkl": (B, EPI2, "Pigmented benign keratosis", False),
    "df": (B, FIB2, "Dermatofibroma", False),
    "vasc": (B, VASC2, None, False),
    "mel": (M, MEL2, "Melanoma, NOS", True),
    "bcc": (M, BCC2, "Basal cell carcinoma", False),
    "akiec": (M, SCC2, "Squamous cell carcinoma in situ", False),
}
HAM_DX_TYPE = {
    "histo": "histopathology",
    "follow_up": "serial imaging showing no change",
    "consensus": "single image expert consensus",
    "confocal": "confocal microscopy with consensus dermoscopy",
}
HAM_SITE = {
    "scalp": "Head and neck", "face": "Head and neck", "ear": "Head and neck", "neck": "Head and neck",
    "back": "Trunk", "chest": "Trunk", "abdomen": "Trunk", "trunk": "Trunk",
    "upper extremity": "Upper extremity", "hand": "Upper extremity",
    "lower extremity": "Lower extremity", "foot": "Lower extremity",
    "genital": "Anogenital region",
    # 'acral' (hand or foot: which limb is unknown) and 'unknown' become missing.
}
HAM_ATTRIBUTION = "ViDIR Group, Medical University of Vienna"
HAM_LICENSE = "CC-BY-NC"

# Retired archive fields (ISIC 2020 CSV, older exports).
BENIGN_MALIGNANT = {
    "benign": B, "malignant": M, "indeterminate": I,
    "indeterminate/benign": I, "indeterminate/malignant": I,
}
FLAT_DIAGNOSIS = {  # lower-case flat `diagnosis` -> (diagnosis_1, diagnosis_2, diagnosis_3)
    "melanoma": (M, MEL2, "Melanoma, NOS"),
    "melanoma metastasis": (M, MEL2, "Melanoma metastasis"),
    "basal cell carcinoma": (M, BCC2, "Basal cell carcinoma"),
    "squamous cell carcinoma": (M, SCC2, "Squamous cell carcinoma, NOS"),
    "nevus": (B, NEV2, "Nevus"),
    "seborrheic keratosis": (B, EPI2, "Seborrheic keratosis"),
    "pigmented benign keratosis": (B, EPI2, "Pigmented benign keratosis"),
    "solar lentigo": (B, EPI2, "Solar lentigo"),
    "lichenoid keratosis": (B, EPI2, "Lichen planus like keratosis"),
    "dermatofibroma": (B, FIB2, "Dermatofibroma"),
    "vascular lesion": (B, VASC2, None),
    "lentigo nos": (B, None, None),
    "lentigo simplex": (B, None, None),
    "cafe-au-lait macule": (B, None, None),
    "actinic keratosis": (I, "Indeterminate epidermal proliferations", "Solar or actinic keratosis"),
    "atypical melanocytic proliferation": (I, "Indeterminate melanocytic proliferations",
                                           "Atypical melanocytic neoplasm"),
}
SITE_GENERAL = {
    "head/neck": "Head and neck",
    "torso": "Trunk", "anterior torso": "Trunk", "posterior torso": "Trunk", "lateral torso": "Trunk",
    "upper extremity": "Upper extremity",
    "lower extremity": "Lower extremity",
    # 'palms/soles' (which limb is unknown) and 'oral/genital' (oral is not anogenital) become missing.
}
RETIRED = ("benign_malignant", "diagnosis", "target", "anatom_site_general", "anatom_site_general_challenge")
ISIC2020_ATTRIBUTION = "ISIC 2020 Challenge Dataset, International Skin Imaging Collaboration"
ISIC2020_LICENSE = "CC-BY-NC"
SITES_1 = ("Head and neck", "Trunk", "Upper extremity", "Lower extremity", "Anogenital region")
