"""`foley corpus|train|eval`: building the corpus, training and evaluating models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from core.config import DEFAULT_MODELS_DIR, Settings
from foley.common import CommandError, comma_list, recorded_command


def cmd_corpus_build(args: argparse.Namespace, settings: Settings) -> int:
    from generative.corpus.build import CorpusExistsError, build_corpus
    from generative.corpus.sources import CorpusSourceError

    try:
        stats = build_corpus(
            Path(args.out),
            size=args.size,
            seed=args.seed,
            install=not args.no_install,
            debian_cache=Path(args.debian_cache) if args.debian_cache else None,
        )
    except (CorpusExistsError, CorpusSourceError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"corpus written to {args.out}: {stats.clips} clips, {stats.hours:.2f} hours")
    print(f"stats: {Path(args.out) / 'stats.md'}")
    return 0


def cmd_train_clap(args: argparse.Namespace, settings: Settings) -> int:
    from generative.clap.train import train_clap

    extra: dict[str, Any] = {} if args.max_steps is None else {"max_steps": args.max_steps}
    if args.sources:
        extra["sources"] = tuple(comma_list(args.sources))
    if args.variants is not None:
        extra["variants"] = tuple(comma_list(args.variants))
    if args.no_augment:
        extra.update(eq_db=0.0, reverb_p=0.0)
    if args.text == "transformer":
        from generative.clap.config import compact_clap_config

        extra["config"] = compact_clap_config()
    if args.init_audio:
        extra["init_audio"] = Path(args.init_audio)
    if args.init:
        extra["init"] = Path(args.init)
    if args.recorded_share is not None:
        extra["recorded_share"] = args.recorded_share
    if args.lr is not None:
        extra["lr"] = args.lr
    if args.threads is not None:
        extra["threads"] = args.threads
    if args.val_clips is not None:
        extra["val_clips"] = args.val_clips
    if args.positives is not None:
        extra["positives"] = args.positives
    out = train_clap(
        Path(args.corpus),
        Path(args.out),
        seed=args.seed,
        max_minutes=args.max_minutes,
        command=recorded_command(),
        **extra,
    )
    print(f"compact CLAP written to {out}")
    return 0


def cmd_eval_clap(args: argparse.Namespace, settings: Settings) -> int:
    from generative.clap import eval as clap_eval

    checkpoint = Path(args.checkpoint or settings.clap_checkpoint)
    splits = comma_list(args.splits)
    report = clap_eval.evaluate_clap(
        Path(args.corpus), checkpoint, splits, baseline=not args.no_baseline
    )
    print(clap_eval.format_markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def cmd_calibrate_missing(args: argparse.Namespace, settings: Settings) -> int:
    from generative.clap.missing import MISSING_FILE, calibrate_missing, format_report

    checkpoint = Path(args.checkpoint or settings.clap_checkpoint)
    if not checkpoint.is_dir():
        raise CommandError(f"{checkpoint} is not a compact CLAP checkpoint folder")
    try:
        report = calibrate_missing(
            Path(args.corpus), checkpoint, check_splits=comma_list(args.splits)
        )
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    print(format_report(report))
    print(f"written to {checkpoint / MISSING_FILE}")
    return 0


def cmd_train_diffatr(args: argparse.Namespace, settings: Settings) -> int:
    from generative.diffatr.train import train_diffatr

    out = train_diffatr(
        Path(args.corpus),
        Path(args.out),
        Path(args.clap_checkpoint or settings.clap_checkpoint),
        seed=args.seed,
        max_minutes=args.max_minutes,
        threads=args.threads,
        train_clips=args.train_clips,
        contrastive_weight=args.contrastive_weight,
        feature_noise=args.feature_noise,
        shard_clips=args.shard_clips,
        candidates=args.candidates,
        command=recorded_command(),
    )
    print(f"DiffATR written to {out}")
    return 0


def cmd_eval_rerank(args: argparse.Namespace, settings: Settings) -> int:
    from generative.diffatr import eval as diffatr_eval
    from generative.diffatr.train import update_card

    checkpoint = Path(args.checkpoint or settings.diffatr_checkpoint)
    clap = Path(args.clap_checkpoint or settings.clap_checkpoint)
    report = diffatr_eval.run_eval(Path(args.corpus), checkpoint, clap, threads=args.threads)
    table = diffatr_eval.format_report(report)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.card:
        update_card(checkpoint, table)
        print(f"evaluation written into {checkpoint / 'README.md'}")
    return 0


def cmd_train_captioner(args: argparse.Namespace, settings: Settings) -> int:
    from generative.captioner.train import train_captioner

    extra: dict[str, Any] = {"threads": args.threads}
    if args.batch_size:
        extra["batch_size"] = args.batch_size
    if args.train_clips:
        extra["train_clips"] = args.train_clips
    if args.neighbours is not None:
        extra["neighbours"] = args.neighbours
    if args.init:
        extra["init"] = Path(args.init)
    out = train_captioner(
        Path(args.corpus),
        Path(args.out),
        Path(args.clap_checkpoint or settings.clap_checkpoint),
        seed=args.seed,
        max_minutes=args.max_minutes,
        command=recorded_command(),
        **extra,
    )
    print(f"captioner written to {out}")
    return 0


def cmd_train_caption_bank(args: argparse.Namespace, settings: Settings) -> int:
    from generative.captioner.retrieval import build_caption_bank

    checkpoint = Path(args.checkpoint or settings.captioner_checkpoint)
    chosen = build_caption_bank(
        Path(args.corpus), checkpoint, Path(args.clap_checkpoint or settings.clap_checkpoint),
        seed=args.seed, threads=args.threads,
    )  # fmt: skip
    picked = chosen["chosen"]
    print(f"caption bank of {chosen['bank_clips']} clips written to {checkpoint}; consensus "
          f"reranking over the {picked['k']} nearest clips, weight {picked['weight']:g} and "
          f"temperature {picked['temperature']:g} with metadata, {picked['weight_bare']:g} and "
          f"{picked['temperature_bare']:g} without")  # fmt: skip
    return 0


def cmd_train_query_expansion(args: argparse.Namespace, settings: Settings) -> int:
    from generative.clap.expansion import EXPANSION_FILE
    from generative.clap.expansion_build import NEAREST, build_expansion, cell

    checkpoint = Path(args.checkpoint or settings.clap_checkpoint)
    if not checkpoint.is_dir():
        raise CommandError(f"{checkpoint} is not a compact CLAP checkpoint folder")
    try:
        chosen = build_expansion(Path(args.corpus), checkpoint, threads=args.threads)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    table = chosen["val_lib_P@10_x_random"]
    picked = cell(chosen["k"], chosen["weight"], chosen["audio_weight"])
    print(
        f"{chosen['captions']} distinct train captions of {chosen['clips']} clips; {picked}: "
        f"val library P@10 {table[picked]:.2f}x random (plain search "
        f"{table[cell(NEAREST[0], 0.0)]:.2f}x)"
    )
    print(f"written to {checkpoint / EXPANSION_FILE}")
    return 0


def cmd_train_generator(args: argparse.Namespace, settings: Settings) -> int:
    from generative.generator.train import TrainOptions, train_generator

    opts = TrainOptions(
        seed=args.seed,
        max_minutes=args.max_minutes,
        max_steps=args.max_steps,
        train_clips=args.train_clips,
        threads=args.threads,
        log_every=args.log_every,
        clap_checkpoint=str(args.clap_checkpoint or settings.clap_checkpoint),
        command=recorded_command(),
    )
    if args.batch_size:
        opts.batch_size = args.batch_size
    if args.lr:
        opts.lr = args.lr
    if args.unet_seconds:
        opts.unet_seconds = args.unet_seconds
    if args.train_condition:
        opts.train_condition = args.train_condition
    if args.init_unet:
        opts.init_unet = args.init_unet
    try:
        out = train_generator(args.stage, Path(args.corpus), Path(args.out), opts)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    print(f"generator {args.stage} written to {out}")
    return 0


def _generator_to_evaluate(args: argparse.Namespace, settings: Settings) -> tuple[Any, Any]:
    """(CLAP, generator) for `foley eval generate|decoder`, on `--threads` torch threads."""
    import torch

    from generative.generator.pipeline import load_generator
    from generative.registry import get_clap

    torch.set_num_threads(args.threads)
    clap = get_clap(settings)
    return clap, load_generator(Path(args.checkpoint or settings.generator_checkpoint), clap=clap)


def cmd_eval_generate(args: argparse.Namespace, settings: Settings) -> int:
    from generative.generator import eval as generate_eval

    chosen = generate_eval.default_settings()
    if args.setting:
        by_name = {s.name: s for s in chosen}
        unknown = [name for name in args.setting if name not in by_name]
        if unknown:
            known = "; ".join(by_name)
            raise CommandError(f"unknown setting {unknown[0]!r}; the settings are: {known}")
        chosen = [by_name[name] for name in args.setting]
    clap, generator = _generator_to_evaluate(args, settings)
    report = generate_eval.run_eval(
        Path(args.corpus), generator, clap, classes=args.classes, per_class=args.per_class,
        seconds=args.seconds, seed=args.seed, settings=chosen,
        examples=Path(args.examples) if args.examples else None,
    )  # fmt: skip
    print(generate_eval.format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def cmd_eval_decoder(args: argparse.Namespace, settings: Settings) -> int:
    from generative.generator import eval as generate_eval

    clap, generator = _generator_to_evaluate(args, settings)
    try:
        report = generate_eval.decoder_report(
            Path(args.corpus), generator, clap, clips=args.clips, seconds=args.seconds
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    print(generate_eval.format_decoder_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def cmd_eval_caption(args: argparse.Namespace, settings: Settings) -> int:
    from generative.captioner import eval as caption_eval
    from generative.captioner.train import update_card

    checkpoint = Path(args.checkpoint or settings.captioner_checkpoint)
    splits = comma_list(args.splits)
    report = caption_eval.run_eval(
        Path(args.corpus),
        checkpoint,
        Path(args.clap_checkpoint or settings.clap_checkpoint),
        splits=splits,
        max_clips=args.max_clips or None,
        threads=args.threads,
    )
    table = caption_eval.format_report(report)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.card:
        update_card(checkpoint, table)
        print(f"evaluation written into {checkpoint / 'README.md'}")
    return 0


def cmd_eval_search(args: argparse.Namespace, settings: Settings) -> int:
    from generative.captioner.eval import split_words
    from generative.captioner.pipeline import load_captioner
    from generative.clap.load import load_clap
    from search.evaluate import evaluate_split, format_table

    clap = load_clap(Path(args.clap_checkpoint or settings.clap_checkpoint))
    captioner = load_captioner(Path(args.checkpoint or settings.captioner_checkpoint), clap=clap)
    report: dict[str, Any] = {"clap": clap.model_id, "captioner": captioner.model_id, "splits": {}}
    for split in comma_list(args.splits):
        # The clips' only words are the captioner's, made without their file names.
        words = split_words(Path(args.corpus), captioner, split, threads=args.threads)
        report["splits"][split] = evaluate_split(
            Path(args.corpus), split, clap, words, settings=settings
        )
        print(f"**{split}** (library protocol; words: generated captions and tags only)\n")
        print(format_table(report["splits"][split]) + "\n", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def add_model_commands(sub: Any) -> None:
    corpus = sub.add_parser("corpus", help="the Foley training corpus")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True)
    p = corpus_sub.add_parser("build", help="build the corpus (deterministic for a seed)")
    p.add_argument("--out", required=True)
    p.add_argument("--size", choices=["small", "default", "demo"], default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-install", action="store_true", help="do not apt-get missing sources")
    p.add_argument("--debian-cache", help="where Debian packages are downloaded and unpacked")
    p.set_defaults(func=cmd_corpus_build)

    train = sub.add_parser("train", help="train a compact model")
    train_sub = train.add_subparsers(dest="model", required=True)
    p = train_sub.add_parser("clap", help="train the compact CLAP on the corpus")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", default=str(DEFAULT_MODELS_DIR / "clap-compact"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=55.0)
    p.add_argument("--max-steps", type=int, help="a fixed number of steps (reproduces a card)")
    p.add_argument("--sources", help="train on these corpus sources only, comma-separated")
    p.add_argument(
        "--variants", help="recorded field clips of these variants only: plain,augmented,mixture"
    )
    p.add_argument("--no-augment", action="store_true", help="no random EQ or room (ablation)")
    p.add_argument(
        "--text", choices=("sentence", "transformer"), default="sentence",
        help="text side: the frozen sentence encoder (default) or a transformer trained here",
    )  # fmt: skip
    p.add_argument("--init-audio", help="start the audio branch from this compact checkpoint")
    p.add_argument("--init", help="start every weight from this compact checkpoint")
    p.add_argument(
        "--recorded-share", type=float,
        help="share of each batch drawn from the recorded clips (default: as they come)",
    )  # fmt: skip
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    p.add_argument("--threads", type=int, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--val-clips", type=int, help="val clips scored during training (default 400)")
    p.add_argument(
        "--positives", choices=("own", "label"),
        help="an audio clip's matches in a batch: its own caption (default) or every caption "
        "of a clip with the same labels",
    )  # fmt: skip
    p.set_defaults(func=cmd_train_clap)
    p = train_sub.add_parser("diffatr", help="train the DiffATR reranker over CLAP features")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", default=str(DEFAULT_MODELS_DIR / "diffatr"))
    p.add_argument("--clap-checkpoint", help="CLAP whose features it reranks (default: settings)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=25.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-clips", type=int, help="use only this many train clips (seeded)")
    p.add_argument("--contrastive-weight", type=float, default=1.0)
    p.add_argument("--feature-noise", type=float, default=0.0, help="text feature noise std")
    p.add_argument(
        "--shard-clips",
        type=int,
        default=2048,
        help="mine negatives in random shards of this many train clips (0: all)",
    )
    p.add_argument("--candidates", type=int, default=32, help="K, candidates per training list")
    p.set_defaults(func=cmd_train_diffatr)
    p = train_sub.add_parser("captioner", help="train the AutoCap captioner over CLAP frames")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", default=str(DEFAULT_MODELS_DIR / "captioner"))
    p.add_argument("--clap-checkpoint", help="CLAP whose frames it reads (default: settings)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=40.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--train-clips", type=int, help="train on a seeded sample of this many clips")
    p.add_argument(
        "--neighbours", type=int, help="captions of the k nearest train clips to read (default 0)"
    )
    p.add_argument("--init", help="start from this captioner checkpoint (tokenizer and weights)")
    p.set_defaults(func=cmd_train_captioner)
    p = train_sub.add_parser(
        "caption-bank", help="give a captioner its caption bank; tune consensus reranking on val"
    )
    p.add_argument("--corpus", required=True)
    p.add_argument("--checkpoint", help="captioner checkpoint folder (default: settings)")
    p.add_argument("--clap-checkpoint", help="CLAP whose frames it reads (default: settings)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=cmd_train_caption_bank)

    p = train_sub.add_parser(
        "query-expansion",
        help="give a CLAP its train-caption bank for expanding text queries; tune it on val",
    )
    p.add_argument("--corpus", required=True)
    p.add_argument("--checkpoint", help="CLAP checkpoint folder (default: settings)")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=cmd_train_query_expansion)

    p = train_sub.add_parser(
        "generator", help="train one stage of the Re-AudioLDM generator (vae, vocoder, unet)"
    )
    p.add_argument("--stage", choices=["vae", "vocoder", "unet"], required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", default=str(DEFAULT_MODELS_DIR / "generator"))
    p.add_argument("--clap-checkpoint", help="CLAP whose embeddings condition the UNet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=55.0)
    p.add_argument("--max-steps", type=int, help="a fixed number of steps instead of the budget")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--train-clips", type=int, help="train on a seeded sample of this many clips")
    p.add_argument("--unet-seconds", type=float, help="length of the UNet's training crops")
    p.add_argument("--log-every", type=int, default=25, help="log the loss every N steps")
    p.add_argument(
        "--train-condition", choices=["text", "audio"],
        help="the UNet's query slot in training: a caption's CLAP text embedding (default) or "
        "the clip's CLAP audio embedding (AudioLDM); sampling always uses text",
    )  # fmt: skip
    p.add_argument(
        "--init-unet", metavar="FOLDER",
        help="unet stage: start from this generator's UNet (e.g. to move it to a new CLAP)",
    )  # fmt: skip
    p.set_defaults(func=cmd_train_generator)

    calibrate = sub.add_parser("calibrate", help="calibrate a decision on the corpus")
    calibrate_sub = calibrate.add_subparsers(dest="what", required=True)
    p = calibrate_sub.add_parser(
        "missing", help="the best-score threshold under which search answers missing: true"
    )
    p.add_argument("--corpus", required=True)
    p.add_argument("--checkpoint", help="CLAP checkpoint folder (default: settings)")
    p.add_argument("--splits", default="test,ood-real", help="splits to check it on")
    p.set_defaults(func=cmd_calibrate_missing)

    evaluate = sub.add_parser("eval", help="evaluate a model on the corpus")
    eval_sub = evaluate.add_subparsers(dest="model", required=True)
    p = eval_sub.add_parser("clap", help="retrieval and zero-shot metrics of a CLAP checkpoint")
    p.add_argument("--corpus", required=True)
    p.add_argument("--checkpoint")
    p.add_argument("--splits", default="test,ood,ood-real", help="comma-separated splits")
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument(
        "--no-baseline", action="store_true",
        help="skip the random-weights baseline (the same for every checkpoint of one config)",
    )  # fmt: skip
    p.set_defaults(func=cmd_eval_clap)
    p = eval_sub.add_parser("rerank", help="CLAP alone against CLAP + DiffATR, with ablations")
    p.add_argument("--corpus", required=True)
    p.add_argument("--checkpoint", help="DiffATR checkpoint folder (default: settings)")
    p.add_argument("--clap-checkpoint", help="CLAP checkpoint (default: settings)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument("--card", action="store_true", help="write the tables into the model card")
    p.set_defaults(func=cmd_eval_rerank)
    p = eval_sub.add_parser("caption", help="caption and tag metrics, baselines and ablations")
    p.add_argument("--corpus", required=True)
    p.add_argument("--checkpoint", help="captioner checkpoint folder (default: settings)")
    p.add_argument("--clap-checkpoint", help="CLAP checkpoint (default: settings)")
    p.add_argument("--splits", default="test,ood,ood-real", help="comma-separated splits")
    p.add_argument("--max-clips", type=int, default=500, help="seeded sample per split (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument("--card", action="store_true", help="write the tables into the model card")
    p.set_defaults(func=cmd_eval_caption)
    p = eval_sub.add_parser(
        "generate", help="generated sounds with and without retrieval: FD, CLAP score, class hits"
    )
    p.add_argument("--corpus", required=True)
    p.add_argument("--checkpoint", help="generator checkpoint folder (default: settings)")
    p.add_argument("--classes", type=int, default=5, help="classes per group (head, tail, unseen)")
    p.add_argument("--per-class", type=int, default=2, help="sounds per class and setting")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument(
        "--setting",
        action="append",
        help="run only this setting (repeat for several; default: all), e.g. 'no retrieval'",
    )
    p.add_argument(
        "--examples", help="write listening examples (.wav) and a spectrogram sheet here"
    )
    p.set_defaults(func=cmd_eval_generate)
    p = eval_sub.add_parser(
        "decoder", help="the generator's VAE and vocoder against Griffin-Lim on real val clips"
    )
    p.add_argument("--corpus", required=True)
    p.add_argument("--checkpoint", help="generator checkpoint folder (default: settings)")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seconds", type=float, default=2.56)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the report as JSON here")
    p.set_defaults(func=cmd_eval_decoder)
    p = eval_sub.add_parser(
        "search", help="search modes audio, words and hybrid on corpus splits (library protocol)"
    )
    p.add_argument("--corpus", required=True)
    p.add_argument("--checkpoint", help="captioner checkpoint folder (default: settings)")
    p.add_argument("--clap-checkpoint", help="CLAP checkpoint (default: settings)")
    p.add_argument("--splits", default="test,ood-real", help="comma-separated splits")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the report as JSON here")
    p.set_defaults(func=cmd_eval_search)
