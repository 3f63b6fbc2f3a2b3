"""Search efficiency on a tabular benchmark: ablate's strategies against the peers' defaults.

Every search runs over `maple_grid.yaml`'s 60 configurations with `--trials` trials (default:
as many as the grid has) and reads its metrics from `grid.csv` (build_grid.py) instead of
training; each strategy is repeated with sampler seeds 0..repeats-1, and the one-seed strategies
train seed 1, 2, 3, 1, ... in turn. Per strategy: the compute (seed-epochs, as a fraction of the
full grid's) consumed until the incumbent, chosen on validation, has a test HM within 1 point of
the grid optimum's; median and IQR over repeats, and the share of repeats ending within 1 point.
What each strategy runs exactly: benchmarks/tabular/strategies.py.

    OMP_NUM_THREADS=1 python benchmarks/tabular/replay.py --repeats 20 --cli-repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import scoring
import yaml
from scoring import Event

from ablate import spec as specs
from ablate.search import replay

HERE = Path(__file__).parent
CLI = "ablate default through the `ablate search` command"
Run = Callable[[specs.StudySpec, int, Path], list[Event]]  # (spec, repeat, folder) -> events


def variant(spec: specs.StudySpec, repeat: int, trials: int, **changes: object) -> specs.StudySpec:
    """The study with sampler seed `repeat`, `trials` trials and the changed search/scheduler."""
    search = dataclasses.replace(spec.search, seed=repeat, trials=trials)
    search = dataclasses.replace(search, **{k: v for k, v in changes.items() if k == "algorithm"})
    scheduler = spec.scheduler
    if "scheduler" in changes:
        scheduler = dataclasses.replace(scheduler, type=changes["scheduler"])
    seeds = [1 + repeat % 3] if changes.get("one_seed") else spec.seeds
    return dataclasses.replace(spec, search=search, scheduler=scheduler, seeds=seeds)


def strategies(table: Path, trials: int) -> dict[str, Run]:
    import strategies as run

    def ablate(**changes: object) -> Run:
        return lambda s, r, d: run.ablate_tune(variant(s, r, trials, **changes), table, d)

    def one_seed(r: int) -> int:
        return 1 + r % 3

    return {  # the cheapest first
        "Optuna TPE + HyperbandPruner, one seed": lambda s, r, d: run.optuna_plain(
            variant(s, r, trials), table, one_seed(r), r, "hyperband"
        ),
        "Optuna TPE + SuccessiveHalvingPruner, one seed": lambda s, r, d: run.optuna_plain(
            variant(s, r, trials), table, one_seed(r), r, "sha"
        ),
        "ablate default: TPE + ASHA, 3-seed means": ablate(),
        "ablate default on one seed": ablate(one_seed=True),
        "Ray Tune default: random + ASHA, one seed": lambda s, r, d: run.tune_default(
            variant(s, r, trials), table, d, one_seed(r), r
        ),
        "ablate random + ASHA, 3-seed means": ablate(algorithm="random"),
        "ablate TPE + HyperBand, 3-seed means": ablate(scheduler="hyperband"),
        "ablate TPE, no pruning, 3-seed means": ablate(scheduler="none"),
        # the one-seed strategies with 3x the trials: the compute of the 3-seed ones
        "ablate default on one seed, 3x trials": lambda s, r, d: run.ablate_tune(
            variant(s, r, 3 * trials, one_seed=True), table, d
        ),
        "Optuna TPE + HyperbandPruner, one seed, 3x trials": lambda s, r, d: run.optuna_plain(
            variant(s, r, 3 * trials), table, one_seed(r), r, "hyperband"
        ),
        "Ray Tune default: random + ASHA, one seed, 3x trials": lambda s, r, d: run.tune_default(
            variant(s, r, 3 * trials), table, d, one_seed(r), r
        ),
    }


def cli_run(study_file: Path, trials: int) -> Run:
    """ablate's default through the real `ablate search` command (a study file per repeat)."""
    import strategies as run

    def go(spec: specs.StudySpec, repeat: int, folder: Path) -> list[Event]:
        raw = yaml.safe_load(study_file.read_text())
        raw["search"] |= {"seed": repeat, "trials": trials}
        (folder / "study.yaml").write_text(yaml.safe_dump(raw))
        return run.ablate_cli(variant(spec, repeat, trials), folder / "study.yaml", folder)

    return go


def rescore(path: Path, table: Path) -> None:
    """The table of a finished run, from the events it saved (`--out` with .events.json)."""
    grid = scoring.summarise(replay.load_table(table.resolve()))
    print(scoring.HEADER)
    for name, searches in json.loads(path.read_text()).items():
        reuse = name.startswith("ablate")
        scores = [scoring.score([Event(*e) for e in s], grid, reuse) for s in searches]
        print(scoring.row(name, scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study", type=Path, default=HERE / "maple_grid.yaml")
    parser.add_argument("--table", type=Path, default=HERE / "grid.csv")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cli-repeats", type=int, default=3, help="real `ablate search` runs")
    parser.add_argument("--trials", type=int, default=0, help="0 = the grid's size")
    parser.add_argument("--only", default="", help="run the strategies whose name has this")
    parser.add_argument("--out", type=Path, default=Path("replay_results.json"))
    parser.add_argument("--rescore", type=Path, help="score the searches of a .events.json")
    args = parser.parse_args()
    if args.rescore:
        return rescore(args.rescore, args.table)
    os.environ[replay.ENV] = str(args.table.resolve())  # before Ray starts: workers inherit it
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # no experiment banner per search
    logging.getLogger("optuna").setLevel(logging.WARNING)
    from ablate.search.tuning import connect

    connect(None)
    spec = specs.load(args.study)
    table = replay.load_table(args.table.resolve())
    grid = scoring.summarise(table)
    trials = args.trials or spec.grid_size()
    print(f"grid: {len(table.cells)} configurations, {grid.seed_epochs} seed-epochs; optimum "
          f"{grid.optimum} test HM {grid.target:.2f}; {trials} trials a search")  # fmt: skip
    runs = {k: v for k, v in strategies(args.table.resolve(), trials).items() if args.only in k}
    if args.cli_repeats and args.only in CLI:
        runs[CLI] = cli_run(args.study, trials)
    results: dict[str, list[dict]] = {}
    searches: dict[str, list[list]] = {}  # every search's events, to score them otherwise later
    for name, run in runs.items():
        repeats = args.cli_repeats if name == CLI else args.repeats
        start = time.perf_counter()
        scores = []
        for repeat in range(repeats):
            with tempfile.TemporaryDirectory() as folder:
                events = run(spec, repeat, Path(folder))
            scores.append(scoring.score(events, grid, reuse=name.startswith("ablate")))
            searches.setdefault(name, []).append([dataclasses.astuple(e) for e in events])
        results[name] = [dataclasses.asdict(s) for s in scores]
        args.out.with_suffix(".events.json").write_text(json.dumps(searches))
        print(scoring.row(name, scores), f"({time.perf_counter() - start:.0f} s)", flush=True)
        args.out.write_text(json.dumps(results, indent=1))
    print(scoring.HEADER)
    for name, scores in results.items():
        print(scoring.row(name, [scoring.Score(**s) for s in scores]))


if __name__ == "__main__":
    main()
