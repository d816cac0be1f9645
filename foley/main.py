"""`foley`: the command line. Output here is the command's own, so it prints.

The command line is Foley's top layer: it starts the API, the workers and the index builder,
and nothing imports it. One module per group of subcommands.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from core.config import ConfigError, Settings, get_settings
from foley.captions import add_caption_commands
from foley.common import CommandError
from foley.generate import add_generate_commands
from foley.library import add_library_commands
from foley.models import add_model_commands
from foley.service import add_service_commands

log = logging.getLogger("foley")

LONG_RUNNING = ("corpus", "train", "eval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="foley", description="Search a sound library by description."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    add_library_commands(sub)
    add_caption_commands(sub)
    add_service_commands(sub)
    add_model_commands(sub)
    add_generate_commands(sub)

    p = sub.add_parser("demo", help="build a demo library, index it and serve search")
    p.add_argument("library", nargs="?", help="index this folder instead of the demo library")
    p.add_argument("--clips", type=int, default=3000)
    p.set_defaults(func=cmd_demo)
    return parser


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Build a demo library from the corpus's held-out clips, index it, and serve it."""
    from generative.corpus.build import build_corpus
    from generative.corpus.demo import build_demo_library

    data = settings.data_dir
    corpus = data / "demo-corpus"
    library = Path(args.library) if args.library else data / "demo-library"
    if not args.library:
        if not (corpus / "manifest.jsonl").exists():
            print(f"building the demo corpus in {corpus} (first run only)")
            build_corpus(corpus, size="demo", seed=0)
        if not library.exists():
            partial = library.with_name(library.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted first run
            count = build_demo_library(corpus, partial, max_clips=args.clips)
            partial.rename(library)
            print(f"demo library: {count} clips in {library}")
    code = main(["index", str(library)])
    if code:
        return code
    example = "a siren in a large hall"
    print(f"example: foley search {example!r}")
    main(["search", example, "-k", "5"])
    host, port = settings.api_host, settings.api_port
    print(
        f"open http://{host}:{port}/ in a browser, or try:\n"
        f"  curl 'http://{host}:{port}/api/search?q=a+siren+in+a+large+hall&k=5'\n"
        f"  foley search 'rain on a window'"
    )
    sys.stdout.flush()  # the server's logs follow on stderr
    return main(["serve"])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Training, evaluation and corpus builds run for minutes to an hour: their progress shows.
    long_running = args.command in LONG_RUNNING
    logging.basicConfig(
        level=logging.INFO if args.verbose or long_running else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from core.audio import AudioError
    from core.redact import install_log_redaction
    from core.vector_index import VectorIndexError
    from generative.errors import ModelLoadError

    try:
        settings = get_settings()
        install_log_redaction(settings)
        return int(args.func(args, settings))
    except (
        ConfigError,
        CommandError,
        AudioError,
        VectorIndexError,
        ModelLoadError,
        FileNotFoundError,
    ) as exc:
        print(f"foley: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("foley: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
