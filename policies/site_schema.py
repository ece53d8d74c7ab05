"""A site's own privacy policy: overrides that may only tighten the consortium policy.

A hospital keeps ``policies/sites/<site>.yaml`` (in deployment: on its own disk). Every field is
optional; a field left out inherits the consortium's value. :func:`policies.effective.
effective_policy` merges a site policy into the consortium policy and rejects any override that
would loosen it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class SiteDPPolicy(_Frozen):
    """A site's DP-SGD overrides; each may only make the mechanism more private."""

    noise_multiplier: float | None = Field(
        default=None, gt=0, description="At least the consortium's noise multiplier (more noise)."
    )
    target_epsilon: float | None = Field(
        default=None, gt=0, description="At most the consortium's target ε."
    )
    max_grad_norm: float | None = Field(
        default=None, gt=0, description="At most the consortium's clipping norm."
    )
    sample_rate: float | None = Field(
        default=None, gt=0, le=1, description="At most the consortium's sampling rate."
    )
    local_epochs: int | None = Field(
        default=None, ge=1, le=100, description="At most the consortium's local epochs."
    )
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
        return self


class SiteSecAggPolicy(_Frozen):
    """A site's SecAgg+ overrides."""

    reconstruction_threshold: int | float | None = Field(
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
    site: str = Field(min_length=1, description="The site id this policy belongs to.")
    delta: float | None = Field(default=None, gt=0, lt=1, description="At most the consortium's δ.")
    epsilon_ceiling: float | None = Field(
        default=None, gt=0, description="At most the consortium's per-run ε ceiling."
    )
    lifetime_epsilon_ceiling: float | None = Field(
        default=None, gt=0, description="At most the consortium's lifetime ε ceiling."
    )
    min_sites: int | None = Field(
        default=None, ge=2, description="At least the consortium's minimum sites per round."
    )
    peers: tuple[str, ...] | None = Field(
        default=None, min_length=2, description="Member sites it trains with (itself included)."
    )
    dp: SiteDPPolicy = SiteDPPolicy()
    secagg: SiteSecAggPolicy = SiteSecAggPolicy()

    @model_validator(mode="after")
    def _self_in_peers(self) -> SitePolicy:
        if self.peers is not None and self.site not in self.peers:
            raise ValueError(f"peers must include the site itself ({self.site!r})")
        return self
