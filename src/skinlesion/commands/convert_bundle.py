"""Convert a bundle from an older skinlesion (format 1: no file sha256s; a logistic regression saved as a
joblib pickle) into the current format. The old bundle is left as it is.

  skinlesion convert-bundle old_bundles/cnn -o bundles/cnn
  skinlesion convert-bundle old_bundles/logreg -o bundles/logreg --trust-pickle

A model.joblib is a pickle: loading it runs any code it holds. It is loaded only with --trust-pickle, which
you give only for a bundle from a source you trust (one you trained yourself); the converted bundle stores
the fitted arrays (model.npz) and never needs unpickling again. See docs/predict.md.
"""

from __future__ import annotations


def configure(parser):
    parser.add_argument("old", metavar="OLD_BUNDLE", help="the bundle folder to convert (never modified)")
    parser.add_argument("-o", "--out", required=True, metavar="NEW_BUNDLE", help="the converted bundle to write")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="unpickle the old bundle's model.joblib (runs any code it holds: only for a bundle "
                             "from a source you trust)")


def run(args):
    from ..bundle_convert import convert

    convert(args.old, args.out, trust_pickle=args.trust_pickle)
    print(f"-> {args.out}")
    return 0
