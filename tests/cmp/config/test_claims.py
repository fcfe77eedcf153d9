"""Recipe `claims`: each names `method` or a swept key and only values that run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cmp.config.recipe import load_recipe
from cmp.errors import RecipeError

RECIPE = """\
data: {{dataset: digits}}
methods: {{simclr: {{preset: simclr}}, moco: {{preset: moco}}}}
sweep: {{loss.name: [nt_xent, nt_logistic], train.seed: [0, 1]}}
claims:
  - {claim}
"""


@pytest.mark.parametrize(("claim", "where", "message"), [
    ("{factor: los.name, order: [nt_xent, nt_logistic]}", "claims.0.factor",
     "'los.name' is neither 'method' nor a swept key (did you mean 'loss.name'?)"),
    ("{factor: loss.name, order: [nt_xent, margin_triplet]}", "claims.0.order",
     "'margin_triplet' is not a value of loss.name; it takes nt_xent, nt_logistic"),
    ("{factor: method, order: [simclr, byol]}", "claims.0.order", "'byol' is not a value of method"),
    ("{factor: method, order: [simclr]}", "claims.0.order", "at least 2 items"),
])
def test_a_bad_claim_is_named_with_its_key_path(
    write_recipe: Callable[..., Path], claim: str, where: str, message: str
) -> None:
    path = write_recipe(RECIPE.format(claim=claim))
    with pytest.raises(RecipeError) as raised:
        load_recipe(path, [])
    assert f"{path}: {where}" in str(raised.value) and message in str(raised.value)


def test_good_claims_load(write_recipe: Callable[..., Path]) -> None:
    recipe = load_recipe(write_recipe(RECIPE.format(claim="{factor: method, order: [simclr, moco], source: x}")), [])
    (claim,) = recipe.model.claims
    assert claim.factor == "method" and claim.order == ["simclr", "moco"] and claim.source == "x"
