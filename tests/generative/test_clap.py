"""CLAP wrapper: compact checkpoints round-trip in fp16, embeddings are unit length and
deterministic, long files are pooled over fixed windows, and bad checkpoints fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generative.clap.config import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, tiny_clap_config
from generative.clap.load import load_clap
from generative.clap.model import ClapLoadError, ClapModel, fill_window, split_windows

SR = 16000


def tone(seconds: float, freq: float, seed: int = 0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.05
    return (0.4 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def test_save_compact_writes_fp16_weights_config_and_card(tmp_path: Path) -> None:
    from safetensors import safe_open

    from generative.clap.model import build_random_clap, save_compact

    config = tiny_clap_config()
    model = build_random_clap(config, seed=3)
    out = save_compact(model, config, tmp_path / "ckpt", card="# tiny\n")

    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE, CARD_FILE])
    assert json.loads((out / CONFIG_FILE).read_text()) == config
    with safe_open(str(out / WEIGHTS_FILE), framework="pt") as f:
        keys = list(f.keys())
        dtypes = {str(f.get_tensor(k).dtype) for k in keys}
        stored = f.get_tensor("text_projection.0.weight")
    assert "torch.float16" in dtypes and "torch.float32" not in dtypes
    # The STFT and mel front end is rebuilt from the config, not stored.
    assert not any("spectrogram_extractor" in k for k in keys)
    original = model.state_dict()["text_projection.0.weight"]
    assert (stored.float() - original).abs().max() < 1e-3

    loaded = load_clap(out)
    assert loaded.module.state_dict()["text_projection.0.weight"].dtype.is_floating_point
    assert str(loaded.module.state_dict()["text_projection.0.weight"].dtype) == "torch.float32"


def test_loaded_model_describes_itself(tiny_clap: ClapModel, tiny_clap_dir: Path) -> None:
    assert tiny_clap.dim == 32
    assert tiny_clap.sample_rate == SR
    assert tiny_clap.window_s == 1.0
    assert tiny_clap.model_id.startswith("clap-compact:")
    assert len(tiny_clap.model_id.split(":")[1]) == 12
    assert load_clap(tiny_clap_dir).model_id == tiny_clap.model_id


def test_model_id_follows_the_weights(tmp_path: Path, tiny_clap: ClapModel) -> None:
    from generative.clap.model import build_random_clap, save_compact

    config = tiny_clap_config()
    other = load_clap(save_compact(build_random_clap(config, seed=1), config, tmp_path))
    assert other.model_id != tiny_clap.model_id


def test_audio_batch_of_different_lengths(tiny_clap: ClapModel) -> None:
    waves = [tone(0.3, 440), tone(1.0, 880), tone(2.5, 220)]
    vectors = tiny_clap.embed_audio(waves)
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])


def test_audio_embedding_is_bit_for_bit_repeatable(tiny_clap: ClapModel) -> None:
    wave = tone(1.7, 330, seed=5)
    first = tiny_clap.embed_audio([wave])
    assert np.array_equal(first, tiny_clap.embed_audio([wave]))
    # Batch company does not change a single bit either.
    in_batch = tiny_clap.embed_audio([tone(0.5, 100), wave, tone(3.0, 700)])
    assert np.array_equal(first[0], in_batch[1])


def test_long_wave_is_mean_of_fixed_windows(tiny_clap: ClapModel) -> None:
    wave = np.concatenate([tone(1.0, 200, 1), tone(1.0, 2000, 2), tone(0.5, 5000, 3)])
    vector = tiny_clap.embed_audio([wave])[0]
    assert np.array_equal(vector, tiny_clap.embed_audio([wave])[0])
    assert not np.allclose(vector, tiny_clap.embed_audio([wave[:SR]])[0], atol=1e-3)

    windows = split_windows(wave, SR)
    assert [w for _, w in windows] == [1.0, 1.0, 0.5]
    per_window = tiny_clap.embed_windows(np.stack([w for w, _ in windows]))
    pooled = (per_window * np.array([1.0, 1.0, 0.5])[:, None]).sum(axis=0)
    np.testing.assert_allclose(vector, pooled / np.linalg.norm(pooled), atol=1e-6)


def test_short_wave_is_repeat_padded(tiny_clap: ClapModel) -> None:
    wave = tone(0.3, 440)
    padded = fill_window(wave, SR)
    assert padded.shape == (SR,) and np.array_equal(padded[: wave.size], wave)
    assert np.array_equal(padded[wave.size : 2 * wave.size], wave)
    np.testing.assert_allclose(
        tiny_clap.embed_audio([wave]), tiny_clap.embed_audio([padded]), atol=1e-6
    )


def test_bad_waves_are_refused(tiny_clap: ClapModel) -> None:
    with pytest.raises(ValueError, match="mono"):
        tiny_clap.embed_audio([np.zeros((2, SR), dtype=np.float32)])
    with pytest.raises(ValueError, match="empty"):
        tiny_clap.embed_audio([np.zeros(0, dtype=np.float32)])
    with pytest.raises(ValueError, match="NaN"):
        tiny_clap.embed_audio([np.full(SR, np.nan, dtype=np.float32)])
    assert tiny_clap.embed_audio([]).shape == (0, 32)


def test_text_embedding(tiny_clap: ClapModel) -> None:
    texts = ["a dog barks twice", "rain on a tin roof", "a dog barks twice"]
    vectors = tiny_clap.embed_text(texts)
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[2])
    assert not np.allclose(vectors[0], vectors[1])
    assert np.array_equal(vectors[1], tiny_clap.embed_text(["rain on a tin roof"])[0])
    # Without filler rows (search's micro-batches) the same vectors, to rounding.
    unfilled = tiny_clap.embed_text(texts, fill=False)
    assert unfilled.shape == (3, 32)
    np.testing.assert_allclose(unfilled, vectors, atol=1e-6)
    alone = tiny_clap.embed_text(["rain on a tin roof"], fill=False)[0]
    np.testing.assert_allclose(alone, vectors[1], atol=1e-6)
    # A caption longer than the context still ends in its end-of-text token.
    long = tiny_clap.embed_text(["wind " * 100, "wind " * 120])
    assert np.isfinite(long).all()


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClapLoadError, match="does not exist"):
        load_clap(tmp_path / "nowhere")
    with pytest.raises(ClapLoadError, match="does not exist"):
        load_clap(tmp_path / "630k-audioset-best.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClapLoadError, match="no config.json"):
        load_clap(tmp_path / "empty")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path, tiny_clap_dir: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / CONFIG_FILE).write_text((tiny_clap_dir / CONFIG_FILE).read_text())
    data = (tiny_clap_dir / WEIGHTS_FILE).read_bytes()
    (broken / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ClapLoadError, match="cannot read CLAP weights"):
        load_clap(broken)

    (broken / WEIGHTS_FILE).write_bytes(data)
    (broken / CONFIG_FILE).write_text('{"embed_dim": 512}')
    with pytest.raises(ClapLoadError, match="audio_cfg"):
        load_clap(broken)

    wider = tiny_clap_config()
    wider["joint_embed_shape"] = 64
    (broken / CONFIG_FILE).write_text(json.dumps(wider))
    with pytest.raises(ClapLoadError, match="do not match"):
        load_clap(broken)


def test_official_checkpoint_needs_local_roberta(tmp_path: Path) -> None:
    from generative.clap.official import missing_roberta_files

    fake = tmp_path / "630k-audioset-best.pt"
    fake.write_bytes(b"not a pickle")
    missing = missing_roberta_files()
    if not missing:
        pytest.skip("roberta-base is cached here; the missing-files message cannot be shown")
    with pytest.raises(ClapLoadError, match="vocab.json"):
        load_clap(fake)


def test_registry_loads_once(settings, tiny_clap_dir: Path) -> None:  # noqa: ANN001
    from generative.registry import clear_models, get_clap

    clear_models()
    first = get_clap(settings)
    assert get_clap(settings) is first
    assert first.model_id == load_clap(tiny_clap_dir).model_id
    clear_models()
    assert get_clap(settings) is not first
    clear_models()
