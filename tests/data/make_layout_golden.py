"""Writes ``layout_golden.json``: the canonical names and shapes of every preset in every form, as the
code gave them before the architecture was opened to variants (commit e2890d8), so that the rewrite
can be held to them bit for bit (tests/test_layout_golden.py).

Each (preset, form) keeps its tensor count, the SHA-256 of its ordered ``name shape`` lines, the
parameter count and the multiply-adds at the stem's default size; the tiny test configs keep their
full listing, which shows a failing name at once. Run it from the repository root:
``.venv/bin/python tests/data/make_layout_golden.py``.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from helpers import TINY, TINY_1X1, TINY_BASIC  # noqa: E402

from resnext_spec import canonical_shapes, count_flops, count_params, get_config, list_presets  # noqa: E402


def lines(config, form: str) -> list[str]:
    return [f"{name} {'x'.join(map(str, shape))}" for name, shape in canonical_shapes(config, form).items()]


def forms(config) -> str:
    return "abc" if config.block == "bottleneck" else "c"


def main() -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    presets = {}
    for name in list_presets():
        config = get_config(name)
        presets[name] = {
            "params": count_params(config),
            "flops": count_flops(config),
            "forms": {
                form: {"tensors": len(ls), "sha256": hashlib.sha256("\n".join(ls).encode()).hexdigest()}
                for form in forms(config)
                for ls in [lines(config, form)]
            },
        }
    tiny = {
        label: {"config": config.to_dict(), "forms": {form: lines(config, form) for form in forms(config)}}
        for label, config in (("TINY", TINY), ("TINY_1X1", TINY_1X1), ("TINY_BASIC", TINY_BASIC))
    }
    out = {"commit": commit, "presets": presets, "tiny": tiny}
    (HERE / "layout_golden.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
