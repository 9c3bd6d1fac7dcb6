"""A provably fair shoe.

The shoe's order comes from a 32-byte seed drawn with ``secrets``: a Fisher-Yates shuffle
whose random numbers are HMAC-SHA256(seed, counter) blocks, each index drawn without bias by
rejection sampling. Before the first card, players see ``commitment = sha256(seed)``; when
the shoe is finished the seed is revealed, and anyone can recompute the whole order with
:func:`verify` and check it against the cards that were dealt. A round that outruns its shoe
goes on with shuffles seeded by HMAC(seed, "continuation:n"), covered by the same commitment.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .cards import deck


class _Stream:
    """Unbiased integers from HMAC-SHA256(seed, counter)."""

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self.counter = 0
        self.buffer = b""

    def _u32(self) -> int:
        if len(self.buffer) < 4:
            block = hmac.new(self.seed, self.counter.to_bytes(8, "big"), hashlib.sha256).digest()
            self.counter += 1
            self.buffer += block
        value, self.buffer = int.from_bytes(self.buffer[:4], "big"), self.buffer[4:]
        return value

    def below(self, n: int) -> int:
        """A uniform integer in [0, n)."""
        limit = (1 << 32) - (1 << 32) % n  # reject the top sliver that would bias the modulo
        while True:
            value = self._u32()
            if value < limit:
                return value % n


def order_from_seed(seed: bytes, decks: int) -> list[str]:
    """The shoe's card order for ``seed`` (Fisher-Yates, last card first)."""
    cards = deck() * decks
    stream = _Stream(seed)
    for i in range(len(cards) - 1, 0, -1):
        j = stream.below(i + 1)
        cards[i], cards[j] = cards[j], cards[i]
    return cards


def continuation_seed(seed: bytes, n: int) -> bytes:
    """The seed of the ``n``-th extra shuffle, for a round that outruns its shoe."""
    return hmac.new(seed, b"continuation:%d" % n, hashlib.sha256).digest()


def dealt_order(seed: bytes, decks: int, count: int) -> list[str]:
    """The first ``count`` cards a shoe with ``seed`` deals, continuations included."""
    cards = order_from_seed(seed, decks)
    n = 0
    while len(cards) < count:
        n += 1
        cards += order_from_seed(continuation_seed(seed, n), decks)
    return cards[:count] if count else cards


def commitment(seed: bytes) -> str:
    return hashlib.sha256(seed).hexdigest()


class Shoe:
    """``decks`` shuffled together; the cut card sits at ``penetration`` of the shoe."""

    def __init__(self, decks: int, penetration: float, seed: bytes | None = None) -> None:
        if not 1 <= decks <= 8:
            raise ValueError("a shoe holds 1 to 8 decks")
        if not 0.25 <= penetration <= 0.95:
            raise ValueError("penetration is between 0.25 and 0.95")
        self.decks = decks
        self.seed = seed if seed is not None else secrets.token_bytes(32)
        self.commitment = commitment(self.seed)
        self.cards = order_from_seed(self.seed, decks)
        self.position = 0
        self.continuations = 0
        self.cut = int(len(self.cards) * penetration)

    def draw(self) -> str:
        if self.position >= len(self.cards):
            # A round with many players and splits outran the shoe (a single deck can):
            # it goes on with another shuffle derived from the same committed seed.
            self.continuations += 1
            self.cards += order_from_seed(continuation_seed(self.seed, self.continuations),
                                          self.decks)  # fmt: skip
        card = self.cards[self.position]
        self.position += 1
        return card

    @property
    def needs_shuffle(self) -> bool:
        """The cut card came out: finish this round, then a new shoe."""
        return self.position >= self.cut

    def reveal(self) -> dict[str, str | int]:
        """What players may check once the shoe is retired."""
        return {"seed": self.seed.hex(), "commitment": self.commitment, "decks": self.decks,
                "dealt": self.position}  # fmt: skip


def verify(seed_hex: str, claimed_commitment: str, decks: int, dealt: int = 0) -> list[str]:
    """The order a revealed seed gives (``dealt`` cards, continuations included; the
    whole first shuffle if 0), if it matches its commitment (else ValueError)."""
    seed = bytes.fromhex(seed_hex)
    if not hmac.compare_digest(commitment(seed), claimed_commitment):
        raise ValueError("the seed does not match the commitment")
    return dealt_order(seed, decks, dealt)
