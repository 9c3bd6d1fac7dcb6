"""A shoe verified the way a player would: by following only the README's description
("Verifying a shoe"), re-implemented here without plugins/blackjack/shoe.py, against the
README's own example, `POST /api/blackjack/verify` and the cards of a played shoe."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .support import running
from .test_blackjack import me, play_out, post, rid, table

README = Path(__file__).resolve().parent.parent / "README.md"


def commitment(seed: bytes) -> str:
    """Step 1: SHA-256 of the 32 seed bytes, lowercase hex."""
    return hashlib.sha256(seed).hexdigest()


def unshuffled(decks: int) -> list[str]:
    """Step 2: suits S H D C, ranks A 2 … 9 T J Q K within each, the deck repeated."""
    return [rank + suit for suit in "SHDC" for rank in "A23456789TJQK"] * decks


def numbers(seed: bytes) -> Iterator[int]:
    """Step 3: blocks HMAC-SHA256(seed, k as 8 bytes big-endian), each read as eight
    big-endian 32-bit integers."""
    k = 0
    while True:
        block = hmac.new(seed, k.to_bytes(8, "big"), hashlib.sha256).digest()
        for offset in range(0, 32, 4):
            yield int.from_bytes(block[offset : offset + 4], "big")
        k += 1


def below(n: int, source: Iterator[int]) -> int:
    """Step 4: rejection above the largest multiple of n, then the remainder."""
    limit = 2**32 - 2**32 % n
    u = next(source)
    while u >= limit:
        u = next(source)
    return u % n


def shuffled(seed: bytes, decks: int) -> list[str]:
    """Step 5: Fisher-Yates from the last position down to 1."""
    cards, source = unshuffled(decks), numbers(seed)
    for i in range(len(cards) - 1, 0, -1):
        j = below(i + 1, source)
        cards[i], cards[j] = cards[j], cards[i]
    return cards


def dealt(seed: bytes, decks: int, count: int) -> list[str]:
    """Step 6: continuation n shuffles with HMAC-SHA256(seed, "continuation:n")."""
    cards, n = shuffled(seed, decks), 0
    while len(cards) < count:
        n += 1
        cards += shuffled(hmac.new(seed, f"continuation:{n}".encode(), "sha256").digest(), decks)
    return cards[:count]


def cards_of(round_: dict[str, Any]) -> list[str]:
    """Step 7, for one seat that stood on its first two cards: seat, dealer up, seat,
    dealer hole, then the dealer's draws."""
    (seat,) = round_["seats"].values()
    (hand,) = seat["hands"]
    dealer = round_["dealer"]
    return [hand["cards"][0], dealer[0], hand["cards"][1], dealer[1], *dealer[2:]]


def test_the_readme_example_follows_from_the_readme_steps() -> None:
    text = " ".join(README.read_text().split())
    example = re.search(
        r"Example: seed `([0-9a-f]{64})` \(bytes 0 to 31\), one deck: commitment `([0-9a-f]{64})`,"
        r" block 0 `([0-9a-f]{64})`, first cards `([^`]+)`, and the first continuation starts"
        r" `([^`]+)`",
        text,
    )
    assert example, "the README's example is where the test expects it"
    seed_hex, committed, block0, first, continuation = example.groups()
    seed = bytes.fromhex(seed_hex)
    assert seed == bytes(range(32)) and commitment(seed) == committed
    assert hmac.new(seed, bytes(8), hashlib.sha256).hexdigest() == block0
    first_cards = first.split()
    assert shuffled(seed, 1)[: len(first_cards)] == first_cards
    assert dealt(seed, 1, 52 + 4)[52:] == continuation.split()
    assert sorted(shuffled(seed, 2)) == sorted(unshuffled(2))


async def test_a_played_shoe_verifies_by_the_readme_alone(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice = await c.register("alice")
        tokens = {await me(c, alice): alice}
        t = await table(c, alice, decks=1, penetration=0.25, insurance=False)
        tid, shoe_id, committed = t["id"], t["shoe"]["id"], t["shoe"]["commitment"]
        sock = await c.ws(alice)
        assert (await sock.request("subscribe", f"blackjack:{tid}"))["op"] == "reply"
        assert (await post(c, alice, tid, "sit"))[0] == 200
        for _ in range(30):  # stand on every hand until the cut card retires the shoe
            status, state = await post(c, alice, tid, "bet", amount=10, request_id=rid())
            assert status == 200, state
            if (await play_out(c, tid, tokens))["shoe"]["id"] != shoe_id:
                break
        retired: dict[str, Any] = {}
        while not retired:
            (event,) = await sock.events(1, timeout=10)
            if event["data"]["type"] == "shoe_retired":
                retired = event["data"]
        seed = bytes.fromhex(retired["seed"])
        assert retired["shoe_id"] == shoe_id and commitment(seed) == committed
        _, history, _ = await c.call("GET", f"/api/blackjack/rounds?table_id={tid}&limit=200")
        played = [card for r in reversed(history["rounds"]) for card in cards_of(r)]
        assert len(played) == retired["dealt"] and len(played) >= 13  # the cut card came out
        assert dealt(seed, 1, len(played)) == played, "every card where the README says"
        status, shoe, _ = await c.call("GET", f"/api/blackjack/shoes/{shoe_id}")
        assert status == 200 and shoe["order"] == shuffled(seed, 1)
        for count in (0, 52 * 3 + 7):  # the first shuffle; continuations too
            status, check, _ = await c.call(
                "POST", "/api/blackjack/verify",
                json={"seed": retired["seed"], "commitment": committed, "decks": 1,
                      "dealt": count},
            )  # fmt: skip
            assert status == 200 and check["order"] == (dealt(seed, 1, count) if count else
                                                         shuffled(seed, 1))  # fmt: skip
        await sock.ws.close()
