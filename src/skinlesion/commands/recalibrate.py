"""Refit a bundle's operating point on a clinic's own labelled images: the threshold for a target
sensitivity (and the temperature, when the bundle calibrates), with the threshold's bootstrap interval and
an honest cross-validated estimate inside the local set; writes a new bundle with its provenance.

  skinlesion recalibrate bundles/mobilenet_frozen clinic/ --target-sensitivity 0.9 -o bundles/mobilenet_clinic
  skinlesion recalibrate bundles/dual_mobilenet_frozen photos/ --metadata labels.csv --target-sensitivity 0.8
      -o bundles/dual_clinic --bootstrap 1000 --cv 5 --report recalibration.json

The original bundle is never modified. A set that shares images, lesions or patients with what the model
was trained or tuned on (the bundle's seen.json) is refused with the counts; --exclude-overlap leaves them
out instead. See docs/recalibration.md.
"""

from __future__ import annotations


def configure(parser):
    parser.add_argument("model", metavar="BUNDLE", help="the bundle to recalibrate: bundles/<variant> (binary)")
    parser.add_argument("folder", metavar="LABELLED_FOLDER",
                        help="the local labelled set, in a layout the local source reads (isic-cli: images/ + "
                             "metadata.csv with diagnosis_1 or benign_malignant; ham10000; isic2020)")
    parser.add_argument("--metadata", metavar="CSV",
                        help="the set's isic-cli metadata CSV when it is not LABELLED_FOLDER/metadata.csv")
    parser.add_argument("--layout", default="auto", choices=("auto", "isic-cli", "ham10000", "isic2020"),
                        help="the folder's layout (default: detected)")
    parser.add_argument("--target-sensitivity", type=float, required=True, metavar="S",
                        help="the sensitivity the threshold must reach on the local set, in (0, 1]")
    parser.add_argument("-o", "--out", required=True, metavar="NEW_BUNDLE", help="the recalibrated bundle to write")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap replicates (default 1000; 0 = none)")
    parser.add_argument("--cv", type=int, default=5, metavar="K", help="cross-validation folds inside the local set (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the folds (default 0)")
    parser.add_argument("--report", metavar="JSON", help="also write the report as JSON")
    parser.add_argument("--exclude-overlap", action="store_true",
                        help="leave out images the model was trained or tuned on (by isic_id, lesion_id, patient_id "
                             "or identical pixels, from the bundle's seen.json) instead of stopping; counted in the "
                             "report")


def run(args):
    from .. import recalibration

    result = recalibration.run(args.model, args.folder, args.out, args.target_sensitivity, metadata=args.metadata,
                               layout=args.layout, n_boot=args.bootstrap, seed=args.seed, k=args.cv,
                               report_path=args.report, exclude_overlap=args.exclude_overlap)
    print(recalibration.summary(result))
    print(f"-> {args.out}")
    return 0
