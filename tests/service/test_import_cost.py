"""What the service's processes import decides their start-up (docs/architecture.md, "Measured:
what the service costs per trial"): each check runs in a fresh interpreter, since this test
process has long imported everything."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def imported_after(code: str, modules: list[str]) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; which of ``modules`` it left in ``sys.modules``."""
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps({{m: m in sys.modules for m in {modules!r}}}))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_job_driver_starts_without_torch_or_mlflow() -> None:
    seen = imported_after("import service.job.supervisor", ["torch", "mlflow", "transformers"])
    assert seen == {"torch": False, "mlflow": False, "transformers": False}


def test_keying_a_posts_trials_does_not_import_the_training_loop() -> None:
    seen = imported_after(
        """
        import json
        from service.api import new_variants
        from service.specs import expand, parse_spec
        spec = {"name": "x", "design": "explicit", "variants": {"a": {}},
                "base": {"preset": "tiny"}, "seeds": 2, "metrics": {"primary": "mean_recall"}}
        planned = new_variants(expand(parse_spec(json.dumps(spec).encode())))
        assert len(planned[0].trials) == 2 and planned[0].trials[0].trial_key
        """,
        ["trainer.loop", "trainer.trial", "transformers"],
    )
    assert seen == {"trainer.loop": False, "trainer.trial": False, "transformers": False}
