"""What each provider charges for labelling images: the one price table.

Prices are list prices in US dollars for the lowest paid tier, per 1,000
images, for exactly the call imagerec makes (one label feature per image).
They change: :data:`PRICES_TAKEN` is the day this table was written, and
every entry names the page it comes from. Update the table (and the date)
rather than hard-coding a price anywhere else.

>>> cost_per_1000("google")
1.5
>>> estimate("aws", 250)
0.25
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..core.errors import UsageError

__all__ = ["Price", "PRICES", "PRICES_TAKEN", "cost_per_1000", "estimate"]

PRICES_TAKEN = "2026-11-25"


@dataclass(frozen=True)
class Price:
    """A provider's price for one labelled image, per 1,000 images."""

    provider: str
    usd_per_1000: float
    tier: str
    free_tier: str
    source: str
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


PRICES: dict[str, Price] = {
    "google": Price(
        "google",
        1.50,
        "units 1,001–5,000,000 a month (then $1.00)",
        "first 1,000 units a month free",
        "https://cloud.google.com/vision/pricing",
        "one LABEL_DETECTION unit per image; every extra feature is billed as another unit",
    ),
    "aws": Price(
        "aws",
        1.00,
        "first 1 million images a month, US East (N. Virginia), Group 2 APIs (DetectLabels)",
        "AWS Free Tier for new accounts (see the pricing page)",
        "https://aws.amazon.com/rekognition/pricing/",
        "$0.001 per image; prices differ by region; the IMAGE_PROPERTIES feature (not used) costs extra",
    ),
    "azure": Price(
        "azure",
        1.00,
        "S1, 0–1M transactions a month, Image Analysis Tag",
        "F0 tier: 5,000 transactions a month free (20 a minute)",
        "https://azure.microsoft.com/pricing/details/cognitive-services/computer-vision/",
        "one transaction per image and feature; prices differ by region and currency",
    ),
    "local": Price(
        "local",
        0.0,
        "runs on this machine",
        "no per-image charge",
        "",
        "the machine's own cost (CPU time, electricity) is not counted",
    ),
}


def cost_per_1000(provider: str) -> float:
    """US dollars for labelling 1,000 images with ``provider``."""
    try:
        return PRICES[provider].usd_per_1000
    except KeyError:
        raise UsageError(f"no price known for provider {provider!r} (known: {', '.join(PRICES)})") from None


def estimate(provider: str, images: int) -> float:
    """US dollars for labelling ``images`` images (free tiers not deducted)."""
    return round(cost_per_1000(provider) * images / 1000.0, 6)
