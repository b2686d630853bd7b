import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinlesion import bundle, features, linear_model
from skinlesion.bundle import Bundle
from skinlesion.variant import of as variant


def test_logreg_class_absent_from_train_keeps_columns_aligned(tmp_path):
    """A five-class logreg that never saw class 1 must still put melanoma's probability in column 2 (train wraps
    it in AllClasses; the bundle scores it as saved)."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame({
        "age_approx": rng.uniform(20, 80, 60), "age_approx_missing": False,
        "sex": rng.choice(["male", "female"], 60),
        "clin_size_long_diam_mm": rng.uniform(1, 10, 60), "clin_size_long_diam_mm_missing": False,
        "anatom_site_1": "Trunk",
    })
    y = np.array([0, 2, 3, 4] * 15)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(features.matrix(table, list(features.KNOWN)), y)
    v = variant({"name": "lr5", "kind": "logreg", "task": "multiclass"})
    from skinlesion.training import AllClasses

    linear_model.save(tmp_path / "model.npz", AllClasses(model, 5), list(features.KNOWN), 5)
    bundle.seal(tmp_path, bundle.manifest(v, input_size=None, imputation_means={}, training_data={}, weights={}))
    probs = Bundle(tmp_path).predict(table)
    assert probs.shape == (60, 5)
    assert np.allclose(probs[:, 1], 0)
    assert np.allclose(probs[:, [0, 2, 3, 4]], model.predict_proba(features.matrix(table, list(features.KNOWN))))
