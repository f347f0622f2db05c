from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import Pipeline

from mixvae import MixtureVAE

from conftest import blobs


def small(**kw) -> MixtureVAE:
    args = {"n_components": 4, "max_epochs": 3, "batch_size": 50, "random_state": 0}
    args.update(kw)
    return MixtureVAE(**args)


@pytest.fixture(scope="module")
def data():
    return blobs()


@pytest.fixture(scope="module")
def fitted(data):
    return small().fit(data[0])


def test_init_only_stores_arguments():
    m = MixtureVAE(n_components=3, preset="seed", max_epochs=2, learning_rate=0.01)
    assert m.get_params()["n_components"] == 3 and m.get_params()["learning_rate"] == 0.01
    assert not [k for k in vars(m) if k.endswith("_")]
    c = clone(m)
    assert c.get_params() == m.get_params() and c is not m
    assert m.set_params(latent_dim=4).latent_dim == 4


def test_recovers_known_clusters(fitted, data):
    X, y = data
    pred = fitted.predict(X)
    assert adjusted_rand_score(y, pred) > 0.95
    np.testing.assert_array_equal(pred, fitted.labels_)


def test_shapes_and_probabilities(fitted, data):
    X, _ = data
    p = fitted.predict_proba(X)
    assert p.shape == (len(X), 4) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(fitted.predict(X), p.argmax(1))
    assert fitted.transform(X).shape == (len(X), fitted.config_.model.latent_dim)
    s = fitted.score_samples(X[:20])
    assert s.shape == (20,) and np.isfinite(s).all()
    assert fitted.score(X[:20]) == pytest.approx(s.mean())
    assert fitted.image_shape_ == (8, 8) and fitted.n_features_in_ == 64
    assert len(fitted.history_) == 3 and fitted.weights_.shape == (4,)


def test_more_importance_samples_tighten_the_bound(fitted, data):
    X, _ = data
    assert fitted.score(X[:50], ) <= fitted.score_samples(X[:50], n_iw_samples=200).mean() + 0.5


def test_input_forms_agree(fitted, data):
    X, _ = data
    ref = fitted.predict_proba(X[:30])
    for form in (X[:30].reshape(30, -1), X[:30] / 255.0, torch.from_numpy(X[:30]), X[:30, :, :, None]):
        np.testing.assert_allclose(fitted.predict_proba(form), ref, atol=1e-6)


def test_fit_predict_and_flat_non_square_input(data):
    X, _ = data
    flat = X.reshape(len(X), -1)[:, :60]  # 60 is not a square: read as vectors of 60 features
    m = small(n_components=2, max_epochs=1)
    labels = m.fit_predict(flat)
    assert m.image_shape_ == (1, 60) and m.input_type_ == "vectors" and labels.shape == (len(X),)


def test_sample(fitted):
    imgs, experts = fitted.sample(12)
    assert imgs.shape == (12, 8, 8) and imgs.dtype == np.float32
    assert imgs.min() >= 0 and imgs.max() <= 1
    assert experts.shape == (12,) and set(experts) <= set(range(4))
    _imgs2, experts2 = fitted.sample(5, expert=2)
    assert (experts2 == 2).all()
    np.testing.assert_array_equal(fitted.sample(12)[0], imgs)  # seeded by random_state
    with pytest.raises(ValueError, match="expert=7"):
        fitted.sample(3, expert=7)


def test_pipeline_and_clone(data):
    X, _ = data
    pipe = Pipeline([("mvae", small(max_epochs=1))])
    assert pipe.fit(X).predict(X).shape == (len(X),)
    assert not hasattr(clone(pipe.named_steps["mvae"]), "module_")


def test_same_seed_same_model(data):
    X, _ = data
    a = small(max_epochs=1).fit(X[:100])
    b = small(max_epochs=1).fit(X[:100])
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


@pytest.mark.parametrize("suffix", ["folder", "model.safetensors"])
def test_save_load_round_trip(fitted, data, tmp_path, suffix):
    X, _ = data
    path = fitted.save(tmp_path / suffix)
    loaded = MixtureVAE.load(path)
    assert loaded.get_params() == fitted.get_params()
    for k, v in fitted.module_.state_dict().items():
        torch.testing.assert_close(loaded.module_.state_dict()[k], v, rtol=0, atol=0)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X[:10]), fitted.score_samples(X[:10]))
    assert loaded.config_ == fitted.config_ and loaded.image_shape_ == (8, 8)
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pt"))


def test_saved_folder_is_a_run_folder(fitted, tmp_path):
    from mixvae.checkpoint import load_run

    _module, cfg = load_run(fitted.save(tmp_path / "m"))
    assert cfg == fitted.config_


def test_not_fitted():
    m = MixtureVAE()
    for call in (lambda: m.predict(np.zeros((2, 4, 4))), lambda: m.sample(2), lambda: m.save("x")):
        with pytest.raises(NotFittedError):
            call()


@pytest.mark.parametrize("bad, match", [
    (np.full((5, 4, 4), 2.0), r"floats must lie in \[0, 1\]"),
    (np.zeros((0, 4, 4)), "no images"),
    (np.zeros(5), "Reshape your data"),
    (np.full((5, 4, 4), np.nan), "non-finite"),
])
def test_bad_input_is_one_clear_sentence(bad, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sentence alone: no numpy warning printed before it
        with pytest.raises(ValueError, match=match) as e:
            MixtureVAE(n_components=2).fit(bad)
    assert "\n" not in str(e.value)


def test_wrong_image_size_and_too_few_images(fitted):
    with pytest.raises(ValueError, match=r"fitted on \(8, 8\)"):
        fitted.predict(np.zeros((3, 5, 5), np.uint8))
    with pytest.raises(ValueError, match="fewer than n_components"):
        MixtureVAE(n_components=10).fit(np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="preset"):
        MixtureVAE(preset="nope").fit(np.zeros((20, 4, 4), np.uint8))


def test_any_image_size():
    X = np.random.default_rng(0).integers(0, 256, (30, 5, 7), dtype=np.uint8)
    m = MixtureVAE(n_components=10, max_epochs=1).fit(X)
    assert m.predict(X).shape == (30,) and m.sample(2)[0].shape == (2, 5, 7)


def test_settings_reach_every_setting_and_stay_clonable(data):
    from sklearn.base import clone

    X, _ = data
    est = MixtureVAE(n_components=3, max_epochs=1, settings={"model.manager_network": "mlp",
                                                              "train": {"augment": False}})
    assert clone(est).get_params()["settings"] == est.settings
    est.fit(X)
    assert est.config_.model.manager_network == "mlp" and est.config_.train.augment is False
    assert type(est.module_.manager).__name__ == "Manager"
    conv = MixtureVAE(n_components=3, max_epochs=1, settings={"model.manager_network": "conv"}).fit(X)
    assert type(conv.module_.manager).__name__ == "ConvManager"
    with pytest.raises(ValueError, match="model.no_such_setting is not an option"):
        MixtureVAE(n_components=3, settings={"model.no_such_setting": 1}).fit(X)
    with pytest.raises(ValueError, match="settings=.* is invalid"):
        MixtureVAE(n_components=3, settings=["model.latent_dim=2"]).fit(X)
