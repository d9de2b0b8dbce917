"""Command line: `toolchain <subcommand>`. It only wires the stages together."""

import argparse
import sys

from .errors import UserError


def cmd_languages(args) -> None:
    from .corpus import available_languages, load_corpus
    from .languages import LANGUAGES

    codes = available_languages(args.corpus)
    corpus = load_corpus(codes, args.corpus)
    print(f"{'code':<5} {'language':<22} {'script':<11} {'calibration':>12} {'evaluation':>11}  (characters)")
    for code in codes:
        lang = LANGUAGES.get(code)
        name, script = (lang.name, lang.script) if lang else (code, "?")
        cal, ev = (len(corpus.text(code, s)) for s in ("calibration", "evaluation"))
        print(f"{code:<5} {name:<22} {script:<11} {cal:>12} {ev:>11}")
    print(f"{len(codes)} languages from {corpus.source}")


def cmd_prepare(args) -> None:
    """Assemble and dequantize a model once, so later steps load it in seconds."""
    from .load import load

    loaded = load(args.model)
    config = loaded.model.config
    print(
        f"{loaded.name}: {loaded.family.name}, {config.num_hidden_layers} layers, "
        f"{config.num_attention_heads} heads ({config.num_key_value_heads} KV), "
        f"{sum(p.numel() for p in loaded.model.parameters()) / 1e6:.0f}M parameters, from {loaded.source}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolchain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("languages", help="list the languages of the corpus")
    p.add_argument("--corpus", help="a folder of <lang>.txt files instead of the UDHR")
    p.set_defaults(func=cmd_languages)

    p = sub.add_parser("prepare", help="assemble and cache a model (done by `make setup`)")
    p.add_argument("model", nargs="?", default="gemma3-270m", help="recipe name, GGUF file or model directory")
    p.set_defaults(func=cmd_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
