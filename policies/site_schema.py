"""A site's own privacy policy: overrides that may only tighten the consortium policy.

A hospital keeps its policy on its own disk (``policy.yaml`` in the node's state directory);
``policies/sites/*.yaml`` are examples for the embedded demonstration. Every field is optional;
a field left out inherits the consortium's value. :func:`policies.effective.effective_policy`
merges a site policy into the consortium policy and rejects any override that would loosen it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from policies.identity import check_site_id


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class SiteDPPolicy(_Frozen):
    """A site's DP-SGD overrides; each may only make the mechanism more private."""

    noise_multiplier: StrictFloat | StrictInt | None = Field(
        default=None, gt=0, le=1000,
        description="At least the consortium's noise multiplier (more noise).")
    target_epsilon: StrictFloat | StrictInt | None = Field(
        default=None, gt=0, le=1000, description="At most the consortium's target ε.")
    max_grad_norm: StrictFloat | StrictInt | None = Field(
        default=None, gt=0, le=1e6, description="At most the consortium's clipping norm.")
    sample_rate: StrictFloat | StrictInt | None = Field(
        default=None, gt=0, le=1, description="At most the consortium's sampling rate.")
    local_epochs: StrictInt | None = Field(
        default=None, ge=1, le=100, description="At most the consortium's local epochs.")
    local_steps: StrictInt | None = Field(
        default=None, ge=1, le=100_000, description="At most the consortium's local steps.")
    accountant: Literal["rdp", "prv"] | None = Field(
        default=None, description="'rdp' (more conservative) may replace 'prv'; never the reverse."
    )

    @field_validator("sample_rate")
    @classmethod
    def _whole_batches(cls, value: float | None) -> float | None:
        if value is not None:
            batches = 1.0 / value
            if abs(batches - round(batches)) > 1e-9:
                raise ValueError(f"1/sample_rate must be whole (got {batches:.4g})")
        return value

    @model_validator(mode="after")
    def _one_noise_source(self) -> SiteDPPolicy:
        if self.noise_multiplier is not None and self.target_epsilon is not None:
            raise ValueError("give at most one of noise_multiplier and target_epsilon")
        if self.local_epochs is not None and self.local_steps is not None:
            raise ValueError("give at most one of local_epochs and local_steps")
        return self


class SiteSecAggPolicy(_Frozen):
    """A site's SecAgg+ overrides."""

    reconstruction_threshold: StrictInt | StrictFloat | None = Field(
        default=None, description="At least the consortium's threshold (more shares to unmask)."
    )


class SitePolicy(_Frozen):
    """One hospital's privacy policy.

    Attributes
    ----------
    site : str
        The site id this policy belongs to; it must be a consortium member.
    delta, epsilon_ceiling, lifetime_epsilon_ceiling : float, optional
        At most the consortium's values.
    min_sites : int, optional
        At least the consortium's value: the site takes part only in rounds this large.
    peers : tuple of str, optional
        The member sites this site agrees to train with (itself included); a subset of the
        consortium's members.
    """

    version: Literal[1] = 1
    site: str = Field(description="The site id this policy belongs to.")
    delta: StrictFloat | None = Field(default=None, gt=0, lt=1,
                                      description="At most the consortium's δ.")
    epsilon_ceiling: StrictFloat | StrictInt | None = Field(
        default=None, gt=0, le=1000, description="At most the consortium's per-run ε ceiling."
    )
    lifetime_epsilon_ceiling: StrictFloat | StrictInt | None = Field(
        default=None, gt=0, le=1000, description="At most the consortium's lifetime ε ceiling."
    )
    min_sites: StrictInt | None = Field(
        default=None, ge=2, description="At least the consortium's minimum sites per round."
    )
    peers: tuple[str, ...] | None = Field(
        default=None, min_length=2, description="Member sites it trains with (itself included)."
    )
    dp: SiteDPPolicy = SiteDPPolicy()
    secagg: SiteSecAggPolicy = SiteSecAggPolicy()

    @field_validator("site")
    @classmethod
    def _valid_site(cls, value: str) -> str:
        return check_site_id(value, what="site")

    @field_validator("peers")
    @classmethod
    def _valid_peers(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for i, site in enumerate(value or ()):
            check_site_id(site, what=f"peers[{i}]")
        return value

    @model_validator(mode="after")
    def _self_in_peers(self) -> SitePolicy:
        if self.peers is not None and self.site not in self.peers:
            raise ValueError(f"peers must include the site itself ({self.site!r})")
        return self
