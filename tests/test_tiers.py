"""The fast tier still proves every framework x form x check: the shared tiny runs hold every row.

`make test` runs the tests not marked ``slow``; its parity proof is the two shared tiny
runs (tests/parity_runs.py). If a check, a form or a framework dropped out of them, every
test reading them could still pass on the rows that are left; this test is what fails.
"""

import pytest
from parity_runs import TINY_RUNS, frameworks, shared, tiny_run

from parity import CHECKS
from resnext_spec import ArchConfig, stage_names


@pytest.mark.parametrize("name", [pytest.param(n, marks=shared(n)) for n in TINY_RUNS])
def test_each_shared_tiny_run_holds_every_framework_form_and_check(name):
    result = tiny_run(name)
    fws = frameworks()
    got = {(r.framework, r.form, r.check) for r in result.results if r.check != "copy"}
    wanted = {(fw, form, check) for fw in fws for form in "abc" for check in CHECKS if check != "copy"}
    assert got == wanted, sorted(wanted ^ got)
    copies = {(r.framework, r.form) for r in result.results if r.check == "copy"}
    directions = {f"{a}->{b}" for a in fws for b in fws if a != b}
    assert copies == {(d, form) for d in directions for form in "abc"}, sorted(copies)
    # and the eval check compared every stage point of every build, not only the logits
    config = ArchConfig.from_dict(next(iter(result.meta["configs"].values())))
    stages = {(r.framework, r.form): list(r.stages or ()) for r in result.results if r.quantity == "stages"}
    assert stages == {(fw, form): list(stage_names(config)[:-1]) for fw in fws for form in "abc"}
    assert result.passed
