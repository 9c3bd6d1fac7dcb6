"""A provably fair shoe.

The house draws a 32-byte server seed with ``secrets`` and shows ``commitment =
sha256(server seed)`` before any player acts. The players then give client seeds with the
bets of the shoe's first round; at that round's deal the shoe is shuffled once and for all
by a Fisher-Yates shuffle whose random numbers are HMAC-SHA256 blocks keyed by
HMAC-SHA256(server seed, "<client seed>:<nonce>") (nonce 0; each index drawn without bias by
rejection sampling). The house cannot pick a favourable order (its seed is committed before
the client seed exists) and the players cannot predict one (they never see the server seed
before the shoe is done). When the shoe is finished the server seed is revealed, and anyone
can recompute the whole order with :func:`verify`. A round that outruns its shoe goes on
with the shuffles of nonces 1, 2, …, covered by the same commitment.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .cards import deck

# A player's client seed: what a bet may carry to be mixed into a new shoe's shuffle.
CLIENT_SEED = r"^[A-Za-z0-9._~-]{1,64}$"


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


def order_from_seed(key: bytes, decks: int) -> list[str]:
    """The card order a shuffle ``key`` gives (Fisher-Yates, last card first)."""
    cards = deck() * decks
    stream = _Stream(key)
    for i in range(len(cards) - 1, 0, -1):
        j = stream.below(i + 1)
        cards[i], cards[j] = cards[j], cards[i]
    return cards


def shuffle_key(seed: bytes, client_seed: str, nonce: int) -> bytes:
    """The key of the ``nonce``-th shuffle (0: the shoe's own; 1, 2, …: a round that
    outruns it) of server ``seed`` and ``client_seed``."""
    return hmac.new(seed, f"{client_seed}:{nonce}".encode(), hashlib.sha256).digest()


def dealt_order(seed: bytes, decks: int, count: int, client_seed: str = "") -> list[str]:
    """The first ``count`` cards a shoe deals (continuations included; 0: the first
    shuffle)."""
    cards = order_from_seed(shuffle_key(seed, client_seed, 0), decks)
    nonce = 0
    while len(cards) < count:
        nonce += 1
        cards += order_from_seed(shuffle_key(seed, client_seed, nonce), decks)
    return cards[:count] if count else cards


def commitment(seed: bytes) -> str:
    return hashlib.sha256(seed).hexdigest()


class Shoe:
    """``decks`` shuffled together; the cut card sits at ``penetration`` of the shoe. The
    order exists once :meth:`shuffle` mixed in the players' client seed (a first draw
    without one shuffles with the empty client seed)."""

    def __init__(self, decks: int, penetration: float, seed: bytes | None = None) -> None:
        if not 1 <= decks <= 8:
            raise ValueError("a shoe holds 1 to 8 decks")
        if not 0.25 <= penetration <= 0.95:
            raise ValueError("penetration is between 0.25 and 0.95")
        self.decks = decks
        self.seed = seed if seed is not None else secrets.token_bytes(32)
        self.commitment = commitment(self.seed)
        self.client_seed: str | None = None  # None: not shuffled yet
        self.cards: list[str] = []
        self.position = 0
        self.continuations = 0
        self.cut = int(52 * decks * penetration)

    def shuffle(self, client_seed: str) -> None:
        """Fix the order with the players' client seed, before the first card."""
        if self.client_seed is not None:
            raise ValueError("the shoe is shuffled already")
        self.client_seed = client_seed
        self.cards = order_from_seed(shuffle_key(self.seed, client_seed, 0), self.decks)

    def draw(self) -> str:
        if self.client_seed is None:
            self.shuffle("")
        assert self.client_seed is not None
        if self.position >= len(self.cards):
            # A round with many players and splits outran the shoe (a single deck can):
            # it goes on with the next nonce's shuffle, covered by the same commitment.
            self.continuations += 1
            key = shuffle_key(self.seed, self.client_seed, self.continuations)
            self.cards += order_from_seed(key, self.decks)
        card = self.cards[self.position]
        self.position += 1
        return card

    @property
    def remaining(self) -> int:
        return (len(self.cards) if self.client_seed is not None else 52 * self.decks) - (
            self.position
        )

    @property
    def needs_shuffle(self) -> bool:
        """The cut card came out: finish this round, then a new shoe."""
        return self.position >= self.cut

    def reveal(self) -> dict[str, str | int]:
        """What players may check once the shoe is retired."""
        return {"seed": self.seed.hex(), "commitment": self.commitment, "decks": self.decks,
                "client_seed": self.client_seed or "", "dealt": self.position}  # fmt: skip


def verify(
    seed_hex: str, claimed_commitment: str, decks: int, dealt: int = 0, client_seed: str = ""
) -> list[str]:
    """The order a revealed seed and the shoe's client seed give (``dealt`` cards,
    continuations included; the whole first shuffle if 0), if the seed matches its
    commitment (else ValueError)."""
    seed = bytes.fromhex(seed_hex)
    if not hmac.compare_digest(commitment(seed), claimed_commitment):
        raise ValueError("the seed does not match the commitment")
    return dealt_order(seed, decks, dealt, client_seed)
