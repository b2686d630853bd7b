"""Score new images with a model bundle: one CSV row per image with class probabilities, the predicted
class at the threshold evaluate chose on validation, and an error column for files that could not be read.

  skinlesion predict bundles/mobilenet_frozen photos/ extra.jpg -o predictions.csv
  skinlesion predict bundles/dual_mobilenet_frozen photos/ --metadata photos/metadata.csv -o out.csv --gradcam cams/

See docs/predict.md.
"""

from __future__ import annotations


def configure(parser):
    parser.add_argument("model", metavar="BUNDLE",
                        help="a model bundle: bundles/<variant> (written by evaluate: with the threshold and "
                             "calibration chosen on validation), or models/<variant> (train's, threshold 0.5)")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="image files and/or folders (searched recursively for .jpg, .jpeg, .png); a metadata-only "
                             "variant given none scores every row of --metadata")
    parser.add_argument("-o", "--out", required=True, help="CSV to write")
    parser.add_argument("--metadata", help="isic-cli metadata CSV (isic_id, age_approx, sex, anatom_site_1, "
                                           "clin_size_long_diam_mm); needed by metadata and dual variants")
    parser.add_argument("--gradcam", metavar="DIR", help="also write a Grad-CAM overlay per image into DIR (image models)")


def run(args):
    from .. import prediction

    frame = prediction.run(args.model, args.paths, args.out, metadata=args.metadata, gradcam_dir=args.gradcam)
    return 1 if len(frame) and frame["error"].notna().all() else 0
