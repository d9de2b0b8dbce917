"""Command line: `langprune <subcommand>`. It only wires the stages together."""

import errno
import json
import signal
import sys
from pathlib import Path

from .arguments import DEFAULT_LANGUAGE_SETS, build_parser
from .errors import UserError, option


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
    """Fetch the corpus and the text beyond it into the cache, assemble and dequantize a model once, so later steps
    load it in seconds, and build llama.cpp for this machine, tried on that model."""
    from .data.fetch import fetch_text
    from .llama_tools import build_llama_cpp
    from .model.load import load

    fetch_text()
    loaded = load(args.model)
    build_llama_cpp(loaded.gguf)
    config = loaded.model.config
    print(
        f"{loaded.name}: {loaded.family.name}, {config.num_hidden_layers} layers, "
        f"{config.num_attention_heads} heads ({config.num_key_value_heads} KV), "
        f"{sum(p.numel() for p in loaded.model.parameters()) / 1e6:.0f}M parameters, from {loaded.source}"
    )


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _export_options(args):
    """The ExportOptions of a subcommand's flags; a subcommand without a flag takes the option's default."""
    from .options import ExportOptions

    names = ("model", "heads", "ffn", "tol", "vocab", "refit", "search", "heal", "layout", "quant", "quant_limit",
             "imatrix", "corpus", "analysis_langs", "out")
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    given["langs"] = _split(args.langs) or []
    for name in ("quant", "analysis_langs"):
        if name in given:
            given[name] = _split(given[name]) or []
    return ExportOptions(**given, **_speed_options(args))


def _speed_options(args) -> dict:
    """The ExportOptions `threads` and `reps` a subcommand's flags give (none: the options' defaults)."""
    given = {}
    if getattr(args, "threads", None) is not None:
        given["threads"] = tuple(_int_list(args.threads, "threads", "1,2"))
    if getattr(args, "reps", None) is not None:
        given["reps"] = args.reps
    return given


def cmd_export(args) -> None:
    from .pipeline import run_export
    from .report.report import summary

    folder = run_export(_export_options(args))
    report = json.loads((folder / "report.json").read_text())
    _print_summary(summary(report))
    written = ["report.md", "report.json", *(["analysis.json", "heatmap.png"] * (folder / "heatmap.png").exists()),
               "onnx/", "gguf/", "pytorch/"]
    print(f"\nWrote {folder} ({', '.join(written)})")


def cmd_analyze(args) -> None:
    from .analysis.analyze import analyze, analyze_cached
    from .data.corpus import load_corpus
    from .model.load import load
    from .paths import check_output, export_dir, output_folder
    from .pipeline import analysis_settings
    from .preflight import check_options
    from .report.plots import heatmap

    options = _export_options(args)
    name, _ = check_options(options)
    out = check_output(args.out or export_dir() / f"{name}-analysis")
    budgets = _int_list(args.against_random, "against_random") if args.against_random else None
    loaded = load(options.model)
    settings = analysis_settings(options)
    langs = list(settings.languages)
    corpus = load_corpus(langs, options.corpus)
    if args.fresh:  # a benchmark: measure the whole analysis, ignoring the cache
        analysis, cached = analyze(loaded.model, loaded.tokenizer, corpus, settings, loaded.fingerprint), False
    else:
        analysis, cached = analyze_cached(loaded.model, loaded.tokenizer, corpus, settings, loaded.fingerprint)
    total = sum(analysis.seconds.values())
    parts = ", ".join(f"{k} {v:.0f}s" for k, v in analysis.seconds.items())
    print(f"{'cached' if cached else 'computed'} analysis of {len(langs)} languages, "
          f"{analysis.layers * analysis.heads} heads: {total:.0f}s ({parts})")
    print(analysis.masking_setup())
    print("agreement (Spearman):", {k: round(v, 3) for k, v in analysis.agreement().items()})
    with output_folder(out) as partial:
        analysis.save(partial / "analysis.json")
        heatmap(analysis, partial / "heatmap.png")
        _analysis_checks(args, budgets, options, loaded, corpus, settings, analysis, partial)
    print(f"Wrote {out}: analysis.json, heatmap.png" + ", masking-check.md" * bool(args.compare_masking)
          + f", selectivity-{'-'.join(options.langs)}.md" * bool(args.against_random))


def _analysis_checks(args, budgets, options, loaded, corpus, settings, analysis, out: Path) -> None:
    """`analyze --compare-masking` and `--against-random`: their tables, printed and written into out."""
    if args.compare_masking:
        from .measure.masking_check import compare_masking
        from .report.benchmarks import render_masking_check

        table = render_masking_check(compare_masking(loaded.model, loaded.tokenizer, corpus, settings))
        (out / "masking-check.md").write_text(table)
        print(table)
    if budgets:
        from .cuts.refit import refit_grams
        from .measure.selectivity import selectivity
        from .model.parts import HEADS
        from .options import all_languages
        from .report.benchmarks import render_selectivity

        grams = None
        if options.refit:
            grams = refit_grams(loaded.model, loaded.tokenizer, corpus, all_languages(options))[HEADS]
        result = selectivity(loaded.model, loaded.tokenizer, corpus, analysis, options.langs, budgets, grams)
        table = render_selectivity(result)
        (out / f"selectivity-{'-'.join(options.langs)}.md").write_text(table)
        print(table)


def cmd_bench(args) -> None:
    from .bench import bench

    for folder, rows in bench(args.exports):
        print(f"\n{folder}")
        _print_summary(rows)


def cmd_bench_speed(args) -> None:
    from .measure.llama_bench import bench
    from .model.gguf_file import read_header
    from .report.speed import speed_table

    for path in args.files:
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        read_header(path)  # a clear line for a file llama-bench could not load
    if args.reps < 1:
        raise UserError(f"{option('reps', args.reps)}: give at least 1 run")
    threads = tuple(_int_list(args.threads, "threads", "1,2")) if args.threads else (1, 2)
    files = {str(path): path for path in args.files}
    print(speed_table(bench(files, threads, args.reps), str(args.files[0])))


def cmd_bench_quants(args) -> None:
    from .bench import bench_quants, deployed_kind, export_folders
    from .llama_tools import llama_tool
    from .options import GGUF_QUANTS

    if args.reps < 1:
        raise UserError(f"{option('reps', args.reps)}: give at least 1 run")
    threads = tuple(_int_list(args.threads, "threads", "1,2")) if args.threads else (2,)
    kinds = _split(args.quants.upper()) if args.quants is not None else None
    if kinds is not None and (not kinds or set(kinds) - set(GGUF_QUANTS)):
        raise UserError(f"{option('quants', args.quants)}: choose from {', '.join(GGUF_QUANTS)}")
    folders = export_folders(args.exports)
    for folder in folders:  # every folder's deployed file before the first folder's minutes
        deployed_kind(folder)
    llama_tool("llama-bench")  # refused now, not after the first quantizations, if it is not built
    for folder in folders:
        result = bench_quants(folder, threads, args.reps, kinds)
        print(f"{folder}: {len(result['files'])} files; the Pareto front: {', '.join(result['front'])}; the deployed "
              f"file ({result['deployed']}) {'is' if result['deployed'] in result['front'] else 'is NOT'} on it; "
              "report.md updated, plot quants.png")


def cmd_bench_frontier(args) -> None:
    from .data.corpus import load_corpus
    from .frontier import DEFAULT_LEVELS, parse_level, write_frontier
    from .llama_tools import llama_tool
    from .model.load import load
    from .options import Context, all_languages
    from .paths import check_output, frontier_dir
    from .preflight import check_options

    options = _export_options(args)
    name, layout = check_options(options)
    levels = [parse_level(text) for text in _split(args.levels if args.levels is not None else DEFAULT_LEVELS) or [""]]
    out = check_output(args.out or frontier_dir(name, options.langs))
    llama_tool("llama-bench")  # each level's speed: refused now, not after the selection, if it is not built
    ctx = Context(options, load(options.model), load_corpus(all_languages(options), options.corpus), layout)
    print(write_frontier(ctx, levels, out, options.threads, options.reps).read_text())
    print(f"Wrote {out}/frontier.md and .json")


def cmd_bench_languages(args) -> None:
    """Every set's options and folder checked first, then one export per set (a set the export refuses
    is a row with its message), then the table."""
    from .llama_tools import llama_tool
    from .options import ExportOptions
    from .paths import check_output, export_dir, export_folder, output_folder
    from .pipeline import run_export
    from .preflight import check_options
    from .report.languages import write_languages

    sets = [_split(text) or [] for text in (args.sets or DEFAULT_LANGUAGE_SETS)]
    options = [ExportOptions(langs=langs, model=args.model, corpus=args.corpus, vocab=args.vocab,
                             **_speed_options(args))
               for langs in sets]
    for each in options:  # codes normalized here as the export will (EN -> en), so its folder is the one checked
        name, _ = check_options(each)
        check_output(export_folder(name, each.langs))
    llama_tool("llama-bench")  # each export's verify runs it: refused now if it is not built
    out = check_output(args.out or export_dir() / f"languages-{name}")
    reports = {}
    for each in options:
        langs = ",".join(each.langs)
        print(f"\n=== make export LANGS={langs}")
        try:
            reports[langs] = json.loads((run_export(each) / "report.json").read_text())
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            reports[langs] = str(err)
    with output_folder(out) as work:
        table = write_languages(work, name, reports)
    print(f"\n{(out / table.name).read_text()}\nWrote {out}/languages.md and .json")


def cmd_mobile_check(args) -> None:
    from .bench import export_folders, mobile_check
    from .measure.mobile import arm64_quants, languages_to_check

    quants, langs, folders = arm64_quants(_split(args.quants)), _split(args.langs), export_folders(args.exports)
    for folder in folders:  # every folder's languages before the first check's minutes
        languages_to_check(folder, langs)
    for folder in folders:
        mobile = mobile_check(folder, args.install, quants, langs)
        ort, arm = mobile["ort"], mobile["arm64"]
        print(f"{folder}: {ort['ort']} ({ort['ort_bytes'] / 2**20:.0f} MiB), {len(ort['operators'])} operator lines in "
              f"{ort['config']}, greedy ORT = ONNX: {all(g['same'] for g in ort['greedy'].values())}; llama.cpp on "
              f"arm64 (qemu {arm['cpu']}) = host: "
              + ", ".join(f"{kind} {'yes' if c['holds'] else 'NO'}" for kind, c in arm["files"].items())
              + "; report.md updated")


def _int_list(text: str, name: str, example: str = "2,4,9,18") -> list[int]:
    """Positive whole numbers separated by commas, given as option `name`."""
    try:
        numbers = [int(x) for x in _split(text) or []]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < 1:
        raise UserError(f"{option(name, repr(text))}: expected positive whole numbers separated by commas, "
                        f"e.g. {example}")
    return numbers


def _print_summary(rows) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{'':<{width}}  {'before':>10} {'after':>10} {'ratio':>7}")
    for what, before, after, ratio in rows:
        print(f"{what:<{width}}  {before:>10} {after:>10} {ratio:>7}")


COMMANDS = {"languages": cmd_languages, "prepare": cmd_prepare, "export": cmd_export, "analyze": cmd_analyze,
            "bench": cmd_bench, "bench-speed": cmd_bench_speed, "bench-quants": cmd_bench_quants,
            "bench-frontier": cmd_bench_frontier,
            "bench-languages": cmd_bench_languages, "mobile-check": cmd_mobile_check}


def main(argv: list[str] | None = None) -> int:
    from .log import show_progress

    show_progress()  # the library's phase lines and progress bars, which a script calling it does not get
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # refused, not ignored
        parser.error(f"{args.command} does not take {' '.join(extra)}")
    # a stopped run (kill, CI timeout) unwinds like Ctrl-C, so nothing half-written stays in exported/
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        COMMANDS[args.command](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk mid-write: one line (what was being written is removed as it unwinds)
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"error: no space left on the disk{f' writing {err.filename}' if err.filename else ''}: free some "
              "(the cache, ~/.cache/langprune, can be emptied; it is rebuilt as needed) and run it again",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: what was half-written is gone as the stack unwound (`paths.written`)
        print("error: interrupted; nothing half-written is left", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
