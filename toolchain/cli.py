"""Command line: `toolchain <subcommand>`. It only wires the stages together."""

import argparse
import json
import signal
import sys
from pathlib import Path

from .errors import UserError


def cmd_languages(args) -> None:
    from .data.corpus import available_languages, load_corpus
    from .data.languages import LANGUAGES

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
    from .model.load import load

    loaded = load(args.model)
    config = loaded.model.config
    print(
        f"{loaded.name}: {loaded.family.name}, {config.num_hidden_layers} layers, "
        f"{config.num_attention_heads} heads ({config.num_key_value_heads} KV), "
        f"{sum(p.numel() for p in loaded.model.parameters()) / 1e6:.0f}M parameters, from {loaded.source}"
    )


def _on_off(text: str) -> bool:
    if text.lower() in ("on", "1", "yes", "true"):
        return True
    if text.lower() in ("off", "0", "no", "false"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: say on or off")


def _vocab(text: str) -> bool | int:
    if text.isdigit():
        return int(text)
    try:
        return _on_off(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: say on, off or a number of tokens") from None


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _export_options(args):
    from .options import ExportOptions

    options = ExportOptions(langs=_split(args.langs) or [], model=args.model, heads=args.heads, ffn=args.ffn,
                            tol=args.tol, vocab=args.vocab, refit=args.refit, search=args.search, heal=args.heal, layout=args.layout or None, corpus=args.corpus, out=args.out)
    if args.quant:
        options.quant = _split(args.quant)
    if args.analysis_langs:
        options.analysis_langs = _split(args.analysis_langs)
    return options


def cmd_export(args) -> None:
    from .pipeline import run_export
    from .report.report import summary

    folder = run_export(_export_options(args))
    report = json.loads((folder / "report.json").read_text())
    _print_summary(summary(report))
    print(f"\nWrote {folder} (report.md, report.json, heatmap.png, onnx/, gguf/, pytorch/)")


def cmd_analyze(args) -> None:
    from .analysis.analyze import Settings, analyze, analyze_cached
    from .data.corpus import load_corpus
    from .model.load import load
    from .options import all_languages, check_options
    from .paths import export_dir
    from .report.plots import heatmap

    options = _export_options(args)
    check_options(options)
    loaded = load(options.model)
    langs = all_languages(options)
    corpus, settings = load_corpus(langs, options.corpus), Settings(tuple(langs))
    if args.fresh:  # a benchmark: measure the whole analysis, ignoring the cache
        analysis, cached = analyze(loaded.model, loaded.tokenizer, corpus, settings, loaded.fingerprint), False
    else:
        analysis, cached = analyze_cached(loaded.model, loaded.tokenizer, corpus, settings, loaded.fingerprint)
    out = Path(args.out or export_dir() / f"{loaded.name}-analysis")
    out.mkdir(parents=True, exist_ok=True)
    analysis.save(out / "analysis.json")
    heatmap(analysis, out / "heatmap.png")
    total = sum(analysis.seconds.values())
    print(f"{'cached' if cached else 'computed'} analysis of {len(langs)} languages, {analysis.layers * analysis.heads} "
          f"heads: {total:.0f}s ({', '.join(f'{k} {v:.0f}s' for k, v in analysis.seconds.items())})")
    print(analysis.masking_setup())
    print("agreement (Spearman):", {k: round(v, 3) for k, v in analysis.agreement().items()})
    print(f"Wrote {out}/analysis.json and heatmap.png")
    if args.compare_masking:
        from .measure.masking_check import compare_masking, render

        table = render(compare_masking(loaded.model, loaded.tokenizer, corpus, settings))
        (out / "masking-check.md").write_text(table)
        print(table)
    if args.against_random:
        from .cuts.refit import refit_grams
        from .measure.selectivity import render, selectivity
        from .model.parts import HEADS

        budgets = _int_list(args.against_random, "--against-random")
        grams = refit_grams(loaded.model, loaded.tokenizer, corpus, langs)[HEADS] if options.refit else None
        table = render(selectivity(loaded.model, loaded.tokenizer, corpus, analysis, options.langs, budgets, grams))
        (out / f"selectivity-{'-'.join(options.langs)}.md").write_text(table)
        print(table)


def cmd_bench(args) -> None:
    from .measure.bench import bench

    for folder, rows in bench(args.exports):
        print(f"\n{folder}")
        _print_summary(rows)


def cmd_bench_frontier(args) -> None:
    from .data.corpus import load_corpus
    from .measure.frontier import DEFAULT_LEVELS, parse_level, write_frontier
    from .model.load import load
    from .options import Context, all_languages, check_options
    from .paths import frontier_dir

    options = _export_options(args)
    name, layout = check_options(options)
    levels = [parse_level(text) for text in _split(args.levels or DEFAULT_LEVELS)]
    threads = tuple(_int_list(args.threads, "--threads"))
    ctx = Context(options, load(options.model), load_corpus(all_languages(options), options.corpus), layout)
    out = Path(args.out or frontier_dir(name, options.langs))
    print(write_frontier(ctx, levels, out, threads, args.reps).read_text())
    print(f"Wrote {out}/frontier.md and .json")


def cmd_mobile_check(args) -> None:
    from .measure.bench import export_folders
    from .measure.mobile import mobile_check

    for folder in export_folders(args.exports):
        mobile = mobile_check(folder)
        ort, arm = mobile["ort"], mobile["arm64"]
        print(f"{folder}: {ort['ort']} ({ort['ort_bytes'] / 2**20:.0f} MiB), {len(ort['operators'])} operator lines in "
              f"{ort['config']}, greedy ORT = ONNX: {all(g['same'] for g in ort['greedy'].values())}; llama.cpp on "
              f"arm64 (qemu {arm['cpu']}) = host: " + ", ".join(f"{kind} {'yes' if c['holds'] else 'NO'}"
                                                              for kind, c in arm["files"].items()) + "; report.md updated")


def _int_list(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in _split(text)]
    except ValueError:
        raise UserError(f"{what} {text!r}: expected whole numbers separated by commas, e.g. 2,4,9,18") from None


def _print_summary(rows) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{'':<{width}}  {'before':>10} {'after':>10} {'ratio':>7}")
    for what, before, after, ratio in rows:
        print(f"{what:<{width}}  {before:>10} {after:>10} {ratio:>7}")


def _add_export_arguments(p) -> None:
    p.add_argument("--langs", required=True, help="languages to keep, ISO 639-1 codes: en,de")
    p.add_argument("--model", default="gemma3-270m", help="recipe name, GGUF file or model directory")
    p.add_argument("--heads", type=float, help="fraction of attention heads to drop (0: none)")
    p.add_argument("--ffn", type=float, help="fraction of FFN neurons to drop (0: none)")
    p.add_argument("--tol", type=float, help="for heads/FFN without a fraction: the largest cut keeping every kept "
                   "language's calibration perplexity within +TOL (default 0.05 when no fraction is given)")
    p.add_argument("--vocab", type=_vocab, default=True, help="on (default), off, or a number of tokens: trim the "
                   "vocabulary to the kept languages' tokens (at most that many)")
    p.add_argument("--refit", type=_on_off, default=True, help="on (default) or off: refit o_proj to the kept heads "
                   "by least squares on calibration text")
    p.add_argument("--search", default="once", help="once (default): rank heads and FFN neurons once on the original "
                   "model; iterative: cut both a step at a time, re-scoring what is left after each step")
    p.add_argument("--heal", type=float, help="minutes of recovery training after the cuts: distil the pruned model "
                   "from the original on kept-language text (default: none)")
    p.add_argument("--layout", help="free or uniform (default: what the model's GGUF can load)")
    p.add_argument("--quant", help="Q8_0,Q4_K_M (GGUF) and/or int8,int4 (ONNX); default Q8_0,Q4_K_M")
    p.add_argument("--corpus", help="a folder of <lang>.txt files instead of the UDHR")
    p.add_argument("--analysis-langs", help="languages to analyze besides the kept ones (default: 12)")
    p.add_argument("--out", type=Path, help="output folder (default exported/<model>-<langs>)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolchain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("languages", help="list the languages of the corpus")
    p.add_argument("--corpus", help="a folder of <lang>.txt files instead of the UDHR")
    p.set_defaults(func=cmd_languages)

    p = sub.add_parser("export", help="analyze, prune, export ONNX and GGUF, verify, report")
    _add_export_arguments(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("analyze", help="per-language head importance: analysis.json and heatmap.png")
    _add_export_arguments(p)
    p.add_argument("--fresh", action="store_true", help="recompute even if cached (to time it)")
    p.add_argument("--against-random", metavar="BUDGETS", help="e.g. 2,4,9,18: mask the heads selected for --langs "
                   "and as many random heads; compare the loss rise per language (selectivity-<langs>.md)")
    p.add_argument("--compare-masking", action="store_true", help="mask every head exactly in float32 and compare "
                   "the analysis's cheaper masking scores with it, per language (masking-check.md)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("bench", help="re-measure existing exports against their originals")
    p.add_argument("exports", nargs="*", type=Path, help="export folders (default: all under exported/)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bench-frontier", help="the cuts at several levels: size, decode speed-up, kept and dropped "
                       "languages' bits per byte, on the evaluation split and beyond the corpus (frontier.md)")
    _add_export_arguments(p)
    p.add_argument("--levels", help="levels separated by commas, each its cuts joined by +: vocab, vocab=<tokens>, "
                   "heads=<fraction>, ffn=<fraction>, norefit, iterative, heal=<minutes> (default: DEFAULT_LEVELS in toolchain/measure/frontier.py)")
    p.add_argument("--threads", default="1,2", help="threads for the decode speed-up, e.g. 1,2")
    p.add_argument("--reps", type=int, default=3, help="interleaved speed repetitions")
    p.set_defaults(func=cmd_bench_frontier)

    p = sub.add_parser("mobile-check", help="check exports for on-device runtimes (ONNX Runtime Mobile, llama.cpp on arm64 under qemu-user); adds to their report")
    p.add_argument("exports", nargs="*", type=Path, help="export folders (default: all under exported/)")
    p.set_defaults(func=cmd_mobile_check)

    p = sub.add_parser("prepare", help="assemble and cache a model (done by `make setup`)")
    p.add_argument("model", nargs="?", default="gemma3-270m", help="recipe name, GGUF file or model directory")
    p.set_defaults(func=cmd_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # a stopped run (kill, CI timeout) unwinds like Ctrl-C, so nothing half-written stays in exported/
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
