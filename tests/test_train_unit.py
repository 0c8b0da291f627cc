"""The training package in-process: data, scaling, clipping, optimizers, model files,
determinism, divergence, saturation and forecasting. The CLI is tested in test_cli_train.py."""
import json
import os
import zipfile

import numpy as np
import pytest

import handgrad as hg
from handgrad.train import (Clip, Series, TrainConfig, build_dataset, clip, global_norm,
                            load_model, make_optimizer, parse_clip, save_model, saturation,
                            train, tutorial_dataset)
from handgrad.train.forecast import forecast
from handgrad.train.model import Model


def test_tutorial_dataset_is_the_tutorials_split():
    data = tutorial_dataset()
    assert data.train.xs.shape == (100, 50, 50) and data.val.xs.shape == (50, 50, 50)
    s = np.sin(np.arange(200.0))
    # window i holds sin(i .. i+49) on the diagonal (one-hot position input) and predicts sin(i+50)
    scale = data.scaler.scale[0]
    np.testing.assert_array_equal(data.train.rows, np.arange(50, 150))
    np.testing.assert_allclose(np.einsum("btt->bt", data.train.xs)[7] * scale, s[7:57], rtol=1e-15)
    np.testing.assert_allclose(data.val.ys[:, 0] * scale, s[150:200], rtol=1e-15)
    assert np.count_nonzero(data.train.xs[3] - np.diag(np.diag(data.train.xs[3]))) == 0


def test_scaling_is_fitted_on_the_training_rows_only():
    values = np.concatenate([np.linspace(-2, 2, 80), 100 + np.arange(30.0)])[:, None]
    data = build_dataset(Series(values, ("v",), "test"), 5, "steps", None, 1 / 3, "maxabs")
    n_train_rows = len(data.train.ys) + 5
    assert data.scaler.scale[0] == np.max(np.abs(values[:n_train_rows]))
    assert data.scaler.scale[0] < 100          # the validation part's large values are not seen


def test_steps_input_feeds_every_column_and_predicts_the_target():
    values = np.stack([np.arange(30.0), np.arange(30.0) ** 2, np.cos(np.arange(30.0))], axis=1)
    data = build_dataset(Series(values, ("a", "b", "c"), "t"), 4, "steps", ["b"], 0.25, "none")
    assert data.train.xs.shape[1:] == (4, 3) and data.train.ys.shape[1] == 1
    np.testing.assert_array_equal(data.train.xs[2], values[2:6])
    np.testing.assert_array_equal(data.train.ys[2], [values[6, 1]])


@pytest.mark.parametrize("values, message", [
    (np.ones((40, 1)), "constant"),
    (np.arange(10.0)[:, None], "too long"),
])
def test_impossible_datasets_raise_value_error(values, message):
    with pytest.raises(ValueError, match=message):
        build_dataset(Series(values, ("v",), "t"), 9, "steps")


def test_clipping_by_value_and_by_global_norm():
    g = hg.Params(np.array([[30.0, -40.0]]), np.array([[0.5]]), np.array([[-0.1]]))
    by_value = clip(g, Clip("value", 10.0))
    np.testing.assert_array_equal(by_value.U, [[10.0, -10.0]])
    np.testing.assert_array_equal(by_value.W, g.W)
    by_norm = clip(g, Clip("norm", 5.0))
    assert global_norm(by_norm) == pytest.approx(5.0, rel=1e-12)
    assert hg.cosine(np.concatenate([a.ravel() for a in by_norm[:3]]),
                     np.concatenate([a.ravel() for a in g[:3]])) == pytest.approx(1.0, abs=1e-12)
    assert clip(g, Clip("norm", 1e6)) is g
    assert parse_clip("none").kind == "none"
    for bad in ("value", "norm:-1", "value:abc", "foo:3", "value:inf"):
        with pytest.raises(ValueError, match="clip"):
            parse_clip(bad)


def test_adam_first_step_moves_each_weight_by_lr_times_sign():
    p = hg.Params(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((1, 2)))
    g = hg.Params(np.full((2, 3), 3.0), np.full((2, 2), -1e-3), np.full((1, 2), 7.0))
    opt = make_optimizer("adam", 0.01)
    new, state = opt.update(p, g, opt.init(p))
    np.testing.assert_allclose(new.U, -0.01, rtol=1e-6)
    # the paper's efficient form: eps acts as eps / sqrt(1 - beta2) on the bias-corrected step
    np.testing.assert_allclose(new.W, 0.01 * 1e-3 / (1e-3 + 1e-8 / np.sqrt(1 - 0.999)), rtol=1e-12)
    assert state.step == 1
    sgd = make_optimizer("sgd", 0.5)
    new, _ = sgd.update(p, g, None)
    np.testing.assert_array_equal(new.V, -3.5)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("rmsprop", 0.1)


def _small_config(**kw):
    base = dict(hidden=8, epochs=2, truncation=hg.Window(3))
    base.update(kw)
    return TrainConfig(**base)


def _small_data():
    return build_dataset(Series(np.sin(np.arange(60.0) * 0.7)[:, None], ("s",), "sine-test"), 6,
                         "position", None, 1 / 3)


def test_same_seed_same_bits_and_another_seed_differs():
    data = _small_data()
    a = train(data, _small_config(shuffle=True, batch_size=3), progress=False)
    b = train(data, _small_config(shuffle=True, batch_size=3), progress=False)
    c = train(data, _small_config(shuffle=True, batch_size=3, seed=1), progress=False)
    for x, y in zip(a.params[:3], b.params[:3]):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.params.U, c.params.U)
    assert [h.val_loss for h in a.history] == [h.val_loss for h in b.history]


def test_training_lowers_the_loss_with_every_optimizer_and_clip():
    data = _small_data()
    for kw in (dict(), dict(optimizer="adam", lr=0.01), dict(clip=Clip("norm", 1.0), batch_size=4),
               dict(activation="tanh", init="orthogonal", truncation=None, bias=True)):
        r = train(data, _small_config(epochs=5, **kw), progress=False)
        assert r.history[-1].train_loss < r.history[0].train_loss, kw
        assert r.diverged is None


def test_divergence_stops_and_keeps_the_last_good_parameters():
    data = _small_data()
    r = train(data, _small_config(lr=1e6, clip=Clip("none", np.inf), epochs=3), progress=False)
    assert r.diverged is not None
    assert all(np.all(np.isfinite(a)) for a in r.params[:3])
    assert np.isfinite(r.val.loss)


def test_saturation_is_detected_at_the_tutorials_initialisation_only():
    data = tutorial_dataset()
    spec = hg.Spec.tutorial()
    tut = hg.init_params(spec, 50, 100, 1, seed=0, init="tutorial")
    normal = hg.init_params(spec, 50, 100, 1, seed=0)
    s_tut = saturation(tut, data.train.xs, hg.Spec.tutorial())
    s_norm = saturation(normal, data.train.xs, hg.Spec.tutorial())
    assert s_tut.saturated and s_tut.fraction_last == 1.0
    assert not s_norm.saturated and s_norm.fraction == 0.0
    assert "saturated" in s_tut.describe() and "constant" in s_tut.describe()


def test_model_file_round_trip_and_atomic_write(tmp_path):
    data = _small_data()
    r = train(data, _small_config(bias=True), progress=False)
    model = Model(r.params, r.spec, data.series, data.scaler, data.inputs, data.window,
                  data.target_cols, len(data.train.ys), {"note": "test"})
    path = str(tmp_path / "m.npz")
    save_model(path, model)
    assert os.listdir(tmp_path) == ["m.npz"]                  # no temporary file left behind
    back = load_model(path)
    for x, y in zip(back.params, r.params):
        assert np.array_equal(x, y)
    assert back.spec == r.spec and back.window == 6 and back.meta["note"] == "test"
    np.testing.assert_array_equal(back.scaler.scale, data.scaler.scale)


def test_model_loader_rejects_untrusted_files(tmp_path):
    data = _small_data()
    r = train(data, _small_config(epochs=1), progress=False)
    good = str(tmp_path / "good.npz")
    save_model(good, Model(r.params, r.spec, data.series, data.scaler, data.inputs, data.window,
                           data.target_cols, len(data.train.ys), {}))
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    cases = {
        "garbage": None,
        "extra": dict(arrays, evil=np.zeros(2)),
        "missing": {k: v for k, v in arrays.items() if k != "W"},
        "object": dict(arrays, U=np.array([object()], dtype=object)),
        "badmeta": dict(arrays, meta=np.array("{not json")),
        "shape": dict(arrays, W=np.zeros((3, 3))),
        "nan": dict(arrays, V=np.full_like(arrays["V"], np.nan)),
        "window": dict(arrays, meta=np.array(json.dumps(
            dict(json.loads(str(arrays["meta"])), window=10_000)))),
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.npz"
        if content is None:
            path.write_bytes(b"\x00not a zip at all")
        else:
            np.savez(path, **content)
        with pytest.raises(ValueError):
            load_model(str(path))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes((tmp_path / "good.npz").read_bytes()[:200])
    with pytest.raises(ValueError):
        load_model(str(truncated))
    assert zipfile.is_zipfile(good)


def test_first_forecast_step_is_the_models_prediction_and_later_steps_feed_back():
    data = _small_data()
    r = train(data, _small_config(epochs=2), progress=False)
    model = Model(r.params, r.spec, data.series, data.scaler, data.inputs, data.window,
                  data.target_cols, len(data.train.ys), {})
    fc = forecast(model, 3)
    os_, _ = hg.predict(r.params, data.val.xs[:1], r.spec)
    assert fc.values[0, 0] == pytest.approx(data.scaler.inverse(os_, (0,))[0, 0], rel=1e-12)
    # step 2 reads the forecast of step 1, not the data
    scaled = data.scaler.transform(data.series.values)[:, 0]
    start = fc.rows[0]
    window = np.concatenate([scaled[start - 5:start], [(fc.values[0, 0]) / data.scaler.scale[0]]])
    o2, _ = hg.predict(r.params, (window * np.eye(6))[None], r.spec)
    assert fc.values[1, 0] == pytest.approx(o2[0, 0] * data.scaler.scale[0], rel=1e-12)
    with pytest.raises(ValueError, match="steps"):
        forecast(model, 0)
    with pytest.raises(ValueError, match="start"):
        forecast(model, 2, start=2)


from hypothesis import given, strategies as st  # noqa: E402


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    data = _small_data()
    r = train(data, _small_config(epochs=1), progress=False)
    path = tmp_path_factory.mktemp("fuzz") / "m.npz"
    save_model(str(path), Model(r.params, r.spec, data.series, data.scaler, data.inputs,
                                data.window, data.target_cols, len(data.train.ys), {}))
    return path.read_bytes()


def _load_or_value_error(tmp_path, blob):
    path = tmp_path / "fuzz.npz"
    path.write_bytes(blob)
    try:
        load_model(str(path))
    except ValueError:
        pass                                   # the only failure a user may see (exit 2)


@given(blob=st.binary(max_size=400))
def test_fuzz_model_loader_random_bytes(tmp_path_factory, blob):
    _load_or_value_error(tmp_path_factory.mktemp("b"), blob)


@given(data=st.data())
def test_fuzz_model_loader_mutated_file(tmp_path_factory, model_bytes, data):
    blob = bytearray(model_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(blob) // 2, len(blob)))
    _load_or_value_error(tmp_path_factory.mktemp("m"), bytes(blob[:cut]))


_csv_text = st.lists(st.lists(st.sampled_from(["1", "2.5", "-3e2", "nan", "x", "", " 4 ", '"5"',
                                                "inf", "1,2", "\x00"]), min_size=1, max_size=4),
                     max_size=30).map(lambda rows: "a,b,c\n" + "\n".join(",".join(r) for r in rows))


@given(text=st.one_of(st.text(max_size=300), _csv_text))
def test_fuzz_csv_reader_and_dataset(tmp_path_factory, text):
    from handgrad.train import load_csv
    path = tmp_path_factory.mktemp("csv") / "f.csv"
    path.write_text(text, encoding="utf-8")
    try:
        series = load_csv(str(path), None)
        build_dataset(series, 3, "steps", None, 1 / 3, "maxabs")
    except ValueError:
        pass
