"""The policy a site actually runs under: the consortium policy tightened by the site's own.

:func:`effective_policy` is the only place where a site policy meets the consortium policy. An
override that would loosen the consortium policy (a higher ceiling, less noise, a larger
clipping norm, fewer sites per round, a larger δ, a non-member peer) is rejected with a
:class:`LooseningError` that names the field and both values.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policies import canonical
from policies.errors import LooseningError
from policies.loader import policy_sha256
from policies.schema import ConsortiumPolicy, DPPolicy, SecAggPolicy
from policies.site_schema import SiteDPPolicy, SitePolicy

#: How strict each accountant is: a site may switch to a stricter (more conservative) one.
ACCOUNTANT_STRICTNESS = {"prv": 0, "rdp": 1}


class EffectivePolicy(BaseModel):
    """The merged, validated policy one site runs under (frozen).

    ``consortium_sha256`` is the hash of the consortium policy (what every round records);
    ``site_policy_sha256`` that of the site's own file (``None`` without one); ``sha256`` that
    of this merged policy.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    consortium_sha256: str
    site_policy_sha256: str | None
    delta: float
    epsilon_ceiling: float
    lifetime_epsilon_ceiling: float
    rounds: int
    min_sites: int
    peers: tuple[str, ...]
    dp: DPPolicy
    secagg: SecAggPolicy
    sha256: str = Field("", description="Content hash of the fields above.")


def _tighter(
    field: str, base: Any, override: Any, ok: Callable[[Any, Any], bool], rule: str
) -> Any:
    if override is None:
        return base
    if not ok(override, base):
        raise LooseningError(
            f"{field}: site value {override!r} loosens the consortium value {base!r} "
            f"(a site may only {rule})"
        )
    return override


def _merge_dp(base: DPPolicy, site: SitePolicy) -> DPPolicy:
    o = site.dp
    le, ge = operator.le, operator.ge
    noise, target = base.noise_multiplier, base.target_epsilon
    if o.noise_multiplier is not None:
        if noise is None:
            raise LooseningError(
                f"dp.noise_multiplier: the consortium fixes target_epsilon {target!r}; a site "
                "may lower dp.target_epsilon but not switch to a noise multiplier"
            )
        noise = _tighter("dp.noise_multiplier", noise, o.noise_multiplier, ge, "raise it")
    if o.target_epsilon is not None:
        if target is None:
            raise LooseningError(
                f"dp.target_epsilon: the consortium fixes noise_multiplier {noise!r}; a site "
                "may raise dp.noise_multiplier but not switch to a target ε"
            )
        target = _tighter("dp.target_epsilon", target, o.target_epsilon, le, "lower it")
    accountant = _tighter(
        "dp.accountant", base.accountant, o.accountant,
        lambda a, b: ACCOUNTANT_STRICTNESS[a] >= ACCOUNTANT_STRICTNESS[b],
        "switch to a more conservative accountant (prv -> rdp)",
    )
    epochs, steps = _merge_work(base, o)
    return DPPolicy(
        noise_multiplier=noise, target_epsilon=target,
        max_grad_norm=_tighter("dp.max_grad_norm", base.max_grad_norm, o.max_grad_norm, le,
                               "lower it"),
        sample_rate=_tighter("dp.sample_rate", base.sample_rate, o.sample_rate, le, "lower it"),
        local_epochs=epochs, local_steps=steps,
        learning_rate=base.learning_rate, accountant=accountant,
    )


def _merge_work(base: DPPolicy, o: SiteDPPolicy) -> tuple[int | None, int | None]:
    """Local work: a site may lower the consortium's epochs or steps, in the same unit."""
    if base.local_steps is not None:
        if o.local_epochs is not None:
            raise LooseningError(
                f"dp.local_epochs: the consortium fixes local_steps {base.local_steps}; a site "
                "may lower dp.local_steps but not switch to epochs")
        return None, _tighter("dp.local_steps", base.local_steps, o.local_steps, operator.le,
                              "lower it")
    if o.local_steps is not None:
        raise LooseningError(
            f"dp.local_steps: the consortium fixes local_epochs {base.local_epochs}; a site may "
            "lower dp.local_epochs but not switch to steps")
    return _tighter("dp.local_epochs", base.local_epochs, o.local_epochs, operator.le,
                    "lower it"), None


def _merge_secagg(base: SecAggPolicy, site: SitePolicy) -> SecAggPolicy:
    t = site.secagg.reconstruction_threshold
    if t is None:
        return base
    if isinstance(t, int) != isinstance(base.reconstruction_threshold, int):
        raise LooseningError(
            f"secagg.reconstruction_threshold: site value {t!r} and consortium value "
            f"{base.reconstruction_threshold!r} must both be counts or both be fractions"
        )
    t = _tighter("secagg.reconstruction_threshold", base.reconstruction_threshold, t,
                 operator.ge, "raise it")
    try:  # a threshold raised to num_shares (or a fraction above 1) cannot be met
        return SecAggPolicy.model_validate({**base.model_dump(), "reconstruction_threshold": t})
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise LooseningError(
            f"secagg.reconstruction_threshold: site value {t!r} cannot apply to the consortium's "
            f"secagg settings ({problems})"
        ) from None


def _merge_peers(consortium: ConsortiumPolicy, site: SitePolicy) -> tuple[str, ...]:
    if site.site not in consortium.sites:
        raise LooseningError(
            f"site: {site.site!r} is not a member of the consortium {list(consortium.sites)}"
        )
    if site.peers is None:
        return consortium.sites
    outsiders = [p for p in site.peers if p not in consortium.sites]
    if outsiders:
        raise LooseningError(
            f"peers: site value {outsiders!r} are not consortium members "
            f"{list(consortium.sites)} (a site may only narrow its peers)"
        )
    return tuple(p for p in consortium.sites if p in site.peers)


def _check_consistent(eff: dict[str, Any]) -> None:
    if eff["min_sites"] > len(eff["peers"]):
        raise LooseningError(
            f"min_sites: {eff['min_sites']} exceeds the site's {len(eff['peers'])} peers"
        )
    if eff["epsilon_ceiling"] > eff["lifetime_epsilon_ceiling"]:
        raise LooseningError(
            f"epsilon_ceiling: {eff['epsilon_ceiling']} exceeds lifetime_epsilon_ceiling "
            f"{eff['lifetime_epsilon_ceiling']}"
        )
    target = eff["dp"].target_epsilon
    if target is not None and target > eff["epsilon_ceiling"]:
        raise LooseningError(
            f"dp.target_epsilon: {target} exceeds epsilon_ceiling {eff['epsilon_ceiling']}"
        )


def effective_policy(
    consortium: ConsortiumPolicy, site: SitePolicy | str | None = None
) -> EffectivePolicy:
    """Merge a site policy into the consortium policy, tightening only.

    Parameters
    ----------
    consortium : ConsortiumPolicy
        The consortium's policy.
    site : SitePolicy or str
        The site's policy, or just its id when the site has no policy of its own.

    Raises
    ------
    LooseningError
        If any override would loosen the consortium policy; the message names the field, the
        site's value and the consortium's value.
    """
    if site is None or isinstance(site, str):
        site = SitePolicy(site=site or consortium.sites[0])
        own_hash = None
    else:
        own_hash = policy_sha256(site)
    le, ge = operator.le, operator.ge
    c = consortium
    eff: dict[str, Any] = {
        "site": site.site, "consortium_sha256": policy_sha256(c), "site_policy_sha256": own_hash,
        "delta": _tighter("delta", c.delta, site.delta, le, "lower it"),
        "epsilon_ceiling": _tighter("epsilon_ceiling", c.epsilon_ceiling, site.epsilon_ceiling,
                                    le, "lower it"),
        "lifetime_epsilon_ceiling": _tighter(
            "lifetime_epsilon_ceiling", c.lifetime_epsilon_ceiling,
            site.lifetime_epsilon_ceiling, le, "lower it"),
        "rounds": c.rounds,
        "min_sites": _tighter("min_sites", c.min_sites, site.min_sites, ge, "raise it"),
        "peers": _merge_peers(c, site),
        "dp": _merge_dp(c.dp, site), "secagg": _merge_secagg(c.secagg, site),
    }
    _check_consistent(eff)
    unsigned = EffectivePolicy(**eff)
    digest = canonical.sha256(unsigned.model_dump(mode="json", exclude={"sha256"}))
    return unsigned.model_copy(update={"sha256": digest})
