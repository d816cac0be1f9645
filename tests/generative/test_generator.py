"""The Re-AudioLDM generator with tiny random models: training steps, sampling, conditions,
guidance, checkpoints and bad requests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from generative.errors import ModelLoadError  # noqa: E402
from generative.generator.config import GeneratorConfig, tiny_config  # noqa: E402
from generative.generator.features import train_neighbours  # noqa: E402
from generative.generator.mel import MelFrontEnd  # noqa: E402
from generative.generator.model import MAX_CHECKPOINT_BYTES, GeneratorLoadError, save_part  # noqa: E402
from generative.generator.pipeline import (  # noqa: E402
    GenerationError,
    Neighbours,
    build_random_generator,
    load_generator,
    query_slot,
    save_generator,
)
from tests.sounds import SAMPLE_RATE, tone  # noqa: E402

DIM = 32  # the tiny CLAP's embedding width


def _unit(seed: int, *shape: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((*shape, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(autouse=True, scope="module")
def one_thread():  # noqa: ANN201
    """Tiny models: a second thread only adds OpenMP waits on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def generator():  # noqa: ANN201
    return build_random_generator(tiny_config(DIM), seed=0)


def _neighbours(k: int, captions: list[bool] | None = None) -> Neighbours:
    has = np.asarray(captions if captions is not None else [True] * k)
    return Neighbours(audio=_unit(1, k), text=_unit(2, k), has_caption=has)


def _generate(generator, **kwargs):  # noqa: ANN001, ANN003, ANN202
    kwargs.setdefault("seconds", 1.0)
    return generator("rain on a tin roof", text_embedding=_unit(0), **kwargs)


def test_config_round_trips_through_json() -> None:
    config = tiny_config(DIM)
    config.clap_model_id = "clap-compact:abc"
    config.unet.latent_scale = 0.731
    again = GeneratorConfig.from_json(config.to_json())
    assert again == config and isinstance(again.unet.block_out_channels, tuple)
    assert config.frame_multiple == 4  # VAE 2x, UNet 2x
    with pytest.raises(ValueError, match="no field"):
        GeneratorConfig.from_dict({"vae": {"latent_width": 3}})


def test_mel_front_end_frames_and_griffin_lim() -> None:
    front_end = MelFrontEnd(tiny_config(DIM).mel)
    wave = torch.from_numpy(tone(1, 1.0))[None]
    mel = front_end(wave)
    assert mel.shape == (1, 100, 16)  # 10 ms hop
    silent = front_end(torch.zeros(1, SAMPLE_RATE))
    assert torch.allclose(silent, torch.full_like(silent, front_end.silence()))
    assert float(mel.mean()) > front_end.silence() + 0.5
    back = front_end.griffin_lim(mel, iters=4)
    assert back.shape == (1, SAMPLE_RATE) and float(back.abs().max()) > 0.01


def test_sampling_is_deterministic_for_a_seed(generator) -> None:  # noqa: ANN001
    first = _generate(generator, neighbours=_neighbours(2), seed=3)
    again = _generate(generator, neighbours=_neighbours(2), seed=3)
    other = _generate(generator, neighbours=_neighbours(2), seed=4)
    assert first.wave.shape == (SAMPLE_RATE,) and first.mel.shape == (100, 16)
    assert np.array_equal(first.wave, again.wave)
    assert not np.allclose(first.wave, other.wave)
    assert set(first.seconds_taken) == {"text", "unet", "vae", "vocoder"}


def test_spectrogram_sheet_draws_each_mel_with_loud_parts_bright(
    generator,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    from PIL import Image

    from generative.generator.picture import spectrogram_sheet

    made = _generate(generator, seed=3).mel  # (100, 16)
    quiet_then_loud = np.full((60, 16), -1.6, np.float32)
    quiet_then_loud[30:] = 1.5
    path = spectrogram_sheet(
        [("made", made), ("quiet then loud", quiet_then_loud)], tmp_path / "s.png", zoom=2
    )
    image = np.asarray(Image.open(path).convert("RGB"), np.float32)
    assert image.shape[1] == 100 * 2  # the longest mel sets the width
    second = image[-16 * 2 - 1 :]  # the last row's picture
    assert second[:, 70:110].sum() > 3 * second[:, :50].sum()  # loud frames are brighter
    with pytest.raises(ValueError, match="frames, mels"):
        spectrogram_sheet([("flat", np.zeros(5, np.float32))], tmp_path / "x.png")


def test_neighbours_and_masks_reach_the_unet(generator) -> None:  # noqa: ANN001
    unet = generator.unet
    _generate(generator, neighbours=_neighbours(3, [True, False, True]), guidance_mode="none")
    assert unet.last_hidden_shape == (1, 1 + 3, 16)  # (B, 1 + k, cond_dim)
    assert unet.last_mask.tolist() == [[True, True, True, True]]
    _generate(generator, neighbours=_neighbours(4), guidance_mode="both", guidance=3.0)
    # Guided: the unconditional half first, with every neighbour hidden.
    assert unet.last_hidden_shape == (2, 1 + 4, 16)
    assert unet.last_mask.tolist() == [[True, False, False, False, False], [True] * 5]
    _generate(generator, guidance_mode="none")
    assert unet.last_mask.tolist() == [[True, False]]  # no retrieval: the slot is hidden
    # A neighbour without a caption changes its own token, and only its own.
    c = generator.conditions(_unit(0), _neighbours(3))
    tokens, _, _ = unet.conditions(c)
    c.caption_mask[0, 1] = False
    changed = (unet.conditions(c)[0] - tokens).abs().sum(dim=-1)[0]  # (1 + k,)
    assert changed[2] > 0 and changed[[0, 1, 3]].abs().sum() == 0
    with pytest.raises(GenerationError, match="at most 4"):
        _generate(generator, neighbours=_neighbours(5))


def test_the_query_slot_mixes_in_the_neighbours_audio_only_when_asked(generator) -> None:  # noqa: ANN001
    text, near = _unit(0), _neighbours(3)
    mean = near.audio.mean(axis=0) / np.linalg.norm(near.audio.mean(axis=0))
    assert np.array_equal(query_slot(text, near, 0.0), text)
    assert np.array_equal(query_slot(text, None, 1.0), text)  # no neighbours: the prompt alone
    np.testing.assert_allclose(query_slot(text, near, 1.0), mean, atol=1e-6)
    half = query_slot(text, near, 0.5)
    assert np.linalg.norm(half) == pytest.approx(1.0, abs=1e-6)
    assert half @ text == pytest.approx(half @ mean, abs=1e-5)  # halfway between the two
    # The mix reaches the UNet: another query, another sound; recorded with the settings.
    plain = _generate(generator, neighbours=near, seed=3)
    mixed = _generate(generator, neighbours=near, seed=3, query_mix=1.0)
    assert plain.settings["query_mix"] == 0.0 and mixed.settings["query_mix"] == 1.0
    assert not np.allclose(plain.mel, mixed.mel, atol=1e-5)
    assert _generate(generator, seed=3, query_mix=1.0).settings["query_mix"] == 0.0
    with pytest.raises(GenerationError, match="query_mix"):
        _generate(generator, neighbours=near, query_mix=1.5)


def test_guidance_modes_give_different_sounds(generator) -> None:  # noqa: ANN001
    waves = {
        mode: _generate(
            generator, neighbours=_neighbours(3), guidance_mode=mode, guidance=4.0, seed=1
        ).mel
        for mode in ("none", "text", "retrieval", "both")
    }
    modes = list(waves)
    for i, a in enumerate(modes):
        for b in modes[i + 1 :]:
            assert not np.allclose(waves[a], waves[b], atol=1e-5), (a, b)


def test_bad_requests_are_clear_errors(generator) -> None:  # noqa: ANN001
    for prompt in ("", "   "):
        with pytest.raises(GenerationError, match="prompt is empty"):
            generator(prompt, seconds=2.0, text_embedding=_unit(0))
    for seconds in (0.5, 10.5, 0):
        with pytest.raises(GenerationError, match="between 1 and 10"):
            _generate(generator, seconds=seconds)
    with pytest.raises(GenerationError, match="32 values"):
        _generate(generator, neighbours=Neighbours(audio=np.zeros((2, 8), np.float32)))
    with pytest.raises(GenerationError, match="guidance mode"):
        _generate(generator, guidance_mode="loud")


def test_cli_refuses_bad_arguments_before_loading_models(
    settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],  # noqa: ANN001
) -> None:
    from foley.main import main

    out = str(tmp_path / "x.wav")
    assert main(["generate", "  ", "--out", out]) == 2
    assert "prompt is empty" in capsys.readouterr().err
    assert main(["generate", "rain", "--seconds", "11", "--out", out]) == 2
    assert "--seconds must be between 1 and 10" in capsys.readouterr().err
    assert main(["generate", "rain", "--out", out, "--spectrogram", "x.jpg"]) == 2
    assert "--spectrogram must name a .png file" in capsys.readouterr().err
    assert main(["generate", "rain", "--out", out]) == 2  # no generator checkpoint here
    assert "generator checkpoint" in capsys.readouterr().err
    assert not Path(out).exists()
    corpus = str(tmp_path)
    assert main(["eval", "generate", "--corpus", corpus, "--setting", "k = 7"]) == 2
    err = capsys.readouterr().err
    assert "unknown setting 'k = 7'" in err and "k = 5, query mix 1" in err


def test_save_load_round_trip(generator, tiny_clap, tmp_path: Path) -> None:  # noqa: ANN001
    folder = save_generator(generator, tmp_path / "gen", card="# card\n")
    for part in ("vae", "unet", "vocoder"):
        assert 0 < (folder / f"{part}.safetensors").stat().st_size <= MAX_CHECKPOINT_BYTES
    assert (folder / "README.md").is_file()
    loaded = load_generator(folder)
    twice = load_generator(folder)
    assert loaded.model_id == twice.model_id and loaded.model_id.startswith("generator:")
    a = _generate(loaded, neighbours=_neighbours(2), seed=5)
    b = _generate(twice, neighbours=_neighbours(2), seed=5)
    assert np.array_equal(a.wave, b.wave)
    original = generator.unet.state_dict()
    for name, value in loaded.unet.state_dict().items():
        assert torch.equal(value, original[name].half().float()), name
    # Errors a user meets: a missing folder, a damaged part, another VAE, another CLAP.
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_generator(tmp_path / "nowhere")
    config = json.loads((folder / "config.json").read_text())
    config["clap_model_id"] = "clap-compact:000000000000"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(GeneratorLoadError, match="trained on CLAP"):
        load_generator(folder, clap=tiny_clap)
    (folder / "vae.safetensors").write_bytes(b"not weights")
    with pytest.raises(GeneratorLoadError, match="cannot read"):
        load_generator(folder)


def test_a_part_over_25_mb_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="25 MB"):
        save_part(torch.nn.Linear(3700, 3700), tmp_path, "unet")
    assert not (tmp_path / "unet.safetensors").exists()


def test_train_neighbours_leave_out_the_clip_its_group_and_copies() -> None:
    audio = _unit(3, 6)
    audio[5] = audio[0]  # a copy of clip 0 from another group
    groups = np.asarray(["a", "a", "b", "c", "d", "e"])
    found = train_neighbours(audio, groups, k=5)
    assert 0 not in found[0] and 1 not in found[0] and 5 not in found[0]
    assert found[0].tolist()[-2:] == [-1, -1]  # only 2, 3, 4 remain
    sims = audio[0] @ audio[found[0, :3]].T
    assert np.all(np.diff(sims) <= 0)  # best first


def _tiny_corpus(root: Path) -> None:
    import soundfile as sf

    rows = []
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for i in range(12):
        name = ["dog", "rain", "bell", "wind"][i % 4]
        path = f"audio/{i:03d}.flac"
        sf.write(root / path, tone(i % 4 * 5, 1.0 + 0.1 * (i % 3)), SAMPLE_RATE)
        rows.append(
            {
                "id": f"c{i:03d}",
                "path": path,
                "split": "val" if i % 4 == 3 else "train",
                "labels": [name],
                "captions": [f"a {name} sound", f"the sound of a {name}"],
                "meta": {"group": f"g{i // 2}"},
            }
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_each_stage_trains_a_step_into_a_loadable_checkpoint(
    tiny_clap_dir: Path,
    tiny_clap,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    from generative.generator.train import TrainOptions, train_generator

    corpus, out = tmp_path / "corpus", tmp_path / "gen"
    _tiny_corpus(corpus)
    for stage in ("vae", "vocoder", "unet"):
        opts = TrainOptions(
            max_steps=1,
            batch_size=2,
            threads=1,
            log_every=1,
            vae_seconds=0.64,
            vocoder_seconds=0.32,
            unet_seconds=0.64,
            config=tiny_config(DIM),
            clap_checkpoint=str(tiny_clap_dir),
        )
        train_generator(stage, corpus, out, opts)
    training = json.loads((out / "training.json").read_text())
    assert set(training) == {"vae", "vocoder", "unet"}
    for facts in training.values():
        assert facts["steps"] == 1 and np.isfinite(facts["curve"][0][1])
    assert set(training["unet"]["val_after"]) == {"all", "no_retrieval", "no_text", "nothing"}
    assert "mel_l1" in training["vocoder"]["val_griffin_lim"]
    assert list((corpus / "cache").glob("generator-clap-*.npz"))
    card = (out / "README.md").read_text()
    assert "### unet" in card and "| step | loss | minutes |" in card
    loaded = load_generator(out, clap=tiny_clap)
    assert loaded.config.clap_model_id == tiny_clap.model_id
    a = loaded("a dog sound", seconds=1.0, neighbours=_neighbours(2), seed=0)
    b = loaded("a dog sound", seconds=1.0, neighbours=_neighbours(2), seed=0)
    assert np.array_equal(a.wave, b.wave) and np.isfinite(a.wave).all()
    # A warm start: the UNet stage from this UNet, at learning rate 0, keeps its weights.
    from safetensors.numpy import load_file

    warm = tmp_path / "warm"
    shutil.copytree(out, warm)
    (warm / "unet.safetensors").unlink()
    opts = TrainOptions(
        max_steps=1, batch_size=2, threads=1, unet_seconds=0.64, lr=0.0,
        clap_checkpoint=str(tiny_clap_dir), init_unet=str(out), seed=3,
    )  # fmt: skip
    train_generator("unet", corpus, warm, opts)
    before, after = load_file(out / "unet.safetensors"), load_file(warm / "unet.safetensors")
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    warm_facts = json.loads((warm / "training.json").read_text())["unet"]
    assert warm_facts["init_unet"] == {"from": str(out), "clap_model_id": tiny_clap.model_id}
    # Retraining the VAE makes the UNet's latents foreign: loading says so.
    train_generator(
        "vae",
        corpus,
        out,
        TrainOptions(max_steps=1, batch_size=2, threads=1, vae_seconds=0.64, seed=1),
    )
    with pytest.raises(GeneratorLoadError, match="another VAE"):
        load_generator(out)


def test_evaluation_reports_every_group_and_setting(tiny_clap, tmp_path: Path) -> None:  # noqa: ANN001
    import soundfile as sf

    from generative.generator.eval import Setting, format_report, frechet, run_eval

    corpus = tmp_path / "corpus"
    (corpus / "audio").mkdir(parents=True)
    rows = []
    # Train: dog (6 clips) and bell (2); test: 4 dog, 4 bell; ood: 4 siren (never in train).
    plan = [("train", "dog", 6), ("train", "bell", 2), ("test", "dog", 4), ("test", "bell", 4),
            ("ood", "siren", 4)]  # fmt: skip
    for split, name, n in plan:
        for j in range(n):
            i = len(rows)
            path = f"audio/{i:03d}.flac"
            sf.write(corpus / path, tone({"dog": 0, "bell": 5, "siren": 10}[name] + j % 2, 1.0),
                     SAMPLE_RATE)  # fmt: skip
            rows.append({"id": f"c{i:03d}", "path": path, "split": split, "labels": [name],
                         "captions": [f"a {name} sound"], "duration": 1.0})  # fmt: skip
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    generator = build_random_generator(tiny_config(tiny_clap.dim), seed=0)
    settings = [Setting("no retrieval", 0, steps=2), Setting("k = 2", 2, steps=2)]
    report = run_eval(corpus, generator, tiny_clap, classes=1, per_class=2, seconds=1.0,
                      settings=settings, examples=tmp_path / "examples")  # fmt: skip
    # Listening examples: each group's class, its real reference and the no-retrieval sound.
    written = sorted(p.name for p in (tmp_path / "examples").iterdir())
    assert written == sorted(
        [f"{g}-{c}-{w}.wav" for g, c in (("head", "dog"), ("tail", "bell"), ("unseen", "siren"))
         for w in ("real", "no_retrieval")] + ["spectrograms.png"]
    )  # fmt: skip
    assert sf.info(tmp_path / "examples" / "head-dog-real.wav").duration == pytest.approx(1.0)
    assert {c["group"]: c["label"] for c in report["classes"]} == {
        "head": "dog", "tail": "bell", "unseen": "siren"
    }  # fmt: skip
    for group in ("head", "tail", "unseen"):
        rows_of = report["groups"][group]
        assert list(rows_of) == ["no retrieval", "k = 2", "copy baseline"]
        assert rows_of["no retrieval"]["sounds"] == 2 and rows_of["copy baseline"]["sounds"] == 1
        assert rows_of["no retrieval"]["copy"] == 0.0  # no neighbours to copy
        assert rows_of["copy baseline"]["copy"] == pytest.approx(1.0, abs=1e-5)
        for metrics in rows_of.values():
            assert 0 <= metrics["hit1"] <= metrics["hit10"] <= 1
    assert "| copy baseline |" in format_report(report)
    a = np.random.default_rng(0).standard_normal((50, 3))
    assert frechet(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet(a, a + 2.0) == pytest.approx(12.0, abs=1e-4)  # only the means moved


def test_decoder_report_compares_the_vocoder_with_griffin_lim(tiny_clap, tmp_path: Path) -> None:  # noqa: ANN001
    import soundfile as sf

    from generative.generator.eval import decoder_report, format_decoder_report

    corpus = tmp_path / "corpus"
    (corpus / "audio").mkdir(parents=True)
    rows: list[dict[str, object]] = []
    for i in range(3):
        path = f"audio/{i:03d}.flac"
        sf.write(corpus / path, tone(i, 1.0), SAMPLE_RATE)
        rows.append({"id": f"c{i:03d}", "path": path, "split": "val", "labels": ["tone"],
                     "captions": ["a tone"], "duration": 1.0})  # fmt: skip
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    generator = build_random_generator(tiny_config(tiny_clap.dim), seed=0)
    report = decoder_report(corpus, generator, tiny_clap, clips=3, seconds=0.64)
    assert report["clips"] == 3
    assert list(report["rows"]) == [
        "mel -> Griffin-Lim", "mel -> vocoder",
        "VAE round trip -> Griffin-Lim", "VAE round trip -> vocoder",
    ]  # fmt: skip
    rows_ = report["rows"]
    assert all(np.isfinite(list(m.values())).all() for m in rows_.values())
    # Untrained, the vocoder makes noise: Griffin-Lim from the real mel is far closer.
    assert rows_["mel -> Griffin-Lim"]["mel_l1"] < rows_["mel -> vocoder"]["mel_l1"]
    assert "| mel -> vocoder |" in format_decoder_report(report)
    without = build_random_generator(tiny_config(tiny_clap.dim), seed=0, vocoder=False)
    with pytest.raises(ValueError, match="no trained vocoder"):
        decoder_report(corpus, without, tiny_clap, clips=3, seconds=0.64)
