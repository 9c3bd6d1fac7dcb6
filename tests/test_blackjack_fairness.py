"""A shoe verified the way a player would: by following only the documented description
("Verifying a shoe" in docs/features/blackjack.md), re-implemented here without
plugins/blackjack/shoe.py, against the page's own example, `POST /api/blackjack/verify` and
the cards of a played shoe."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .support import running
from .test_blackjack import me, play_out, post, rid, table

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "features" / "blackjack.md"


def commitment(seed: bytes) -> str:
    """Step 1: SHA-256 of the 32 seed bytes, lowercase hex."""
    return hashlib.sha256(seed).hexdigest()


def key(seed: bytes, client_seed: str, n: int) -> bytes:
    """Step 3: HMAC-SHA256(server seed, "<client seed>:<n>")."""
    return hmac.new(seed, f"{client_seed}:{n}".encode(), hashlib.sha256).digest()


def unshuffled(decks: int) -> list[str]:
    """Step 4: suits S H D C, ranks A 2 … 9 T J Q K within each, the deck repeated."""
    return [rank + suit for suit in "SHDC" for rank in "A23456789TJQK"] * decks


def numbers(shuffle_key: bytes) -> Iterator[int]:
    """Step 5: blocks HMAC-SHA256(key, k as 8 bytes big-endian), each read as eight
    big-endian 32-bit integers."""
    k = 0
    while True:
        block = hmac.new(shuffle_key, k.to_bytes(8, "big"), hashlib.sha256).digest()
        for offset in range(0, 32, 4):
            yield int.from_bytes(block[offset : offset + 4], "big")
        k += 1


def below(n: int, source: Iterator[int]) -> int:
    """Step 6: rejection above the largest multiple of n, then the remainder."""
    limit = 2**32 - 2**32 % n
    u = next(source)
    while u >= limit:
        u = next(source)
    return u % n


def shuffled(shuffle_key: bytes, decks: int) -> list[str]:
    """Step 7: Fisher-Yates from the last position down to 1."""
    cards, source = unshuffled(decks), numbers(shuffle_key)
    for i in range(len(cards) - 1, 0, -1):
        j = below(i + 1, source)
        cards[i], cards[j] = cards[j], cards[i]
    return cards


def dealt(seed: bytes, client_seed: str, decks: int, count: int) -> list[str]:
    """Step 8: shuffles 1, 2, … follow shuffle 0."""
    cards, n = shuffled(key(seed, client_seed, 0), decks), 0
    while len(cards) < count:
        n += 1
        cards += shuffled(key(seed, client_seed, n), decks)
    return cards[:count]


def cards_of(round_: dict[str, Any]) -> list[str]:
    """Step 9, for seats that stood on their first two cards: each seat's first card in
    seat order, the dealer's up card, each seat's second, the hole card, the dealer's draws."""
    hands = [round_["seats"][n]["hands"] for n in sorted(round_["seats"], key=int)]
    assert all(len(h) == 1 and len(h[0]["cards"]) == 2 for h in hands)
    dealer = round_["dealer"]
    return [*(h[0]["cards"][0] for h in hands), dealer[0],
            *(h[0]["cards"][1] for h in hands), dealer[1], *dealer[2:]]  # fmt: skip


def test_the_readme_example_follows_from_the_readme_steps() -> None:
    text = " ".join(GUIDE.read_text().split())
    example = re.search(
        r"Example: server seed `([0-9a-f]{64})` \(bytes 0 to 31\), commitment `([0-9a-f]{64})`;"
        r" client seed `([^`]+)`, one deck: key of shuffle 0 `([0-9a-f]{64})`, its block 0"
        r" `([0-9a-f]{64})`, first cards `([^`]+)`; shuffle 1 starts `([^`]+)`",
        text,
    )
    assert example, "the guide's example is where the test expects it"
    seed_hex, committed, client_seed, key0, block0, first, then = example.groups()
    seed = bytes.fromhex(seed_hex)
    assert seed == bytes(range(32)) and commitment(seed) == committed
    assert key(seed, client_seed, 0).hex() == key0
    assert hmac.new(bytes.fromhex(key0), bytes(8), hashlib.sha256).hexdigest() == block0
    first_cards = first.split()
    assert shuffled(key(seed, client_seed, 0), 1)[: len(first_cards)] == first_cards
    assert dealt(seed, client_seed, 1, 52 + 4)[52:] == then.split()
    assert sorted(shuffled(key(seed, "", 0), 2)) == sorted(unshuffled(2))


async def test_a_played_shoe_verifies_by_the_readme_alone(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        tokens = {await me(c, alice): alice, await me(c, bob): bob}
        t = await table(c, alice, decks=1, penetration=0.25, insurance=False)
        tid, shoe_id, committed = t["id"], t["shoe"]["id"], t["shoe"]["commitment"]
        assert t["shoe"]["client_seed"] is None  # nothing is shuffled before the bets
        sock = await c.ws(alice)
        assert (await sock.request("subscribe", f"blackjack:{tid}"))["op"] == "reply"
        assert (await post(c, alice, tid, "sit", seat=3))[0] == 200
        assert (await post(c, bob, tid, "sit", seat=5))[0] == 200
        # The first round: both bet, alice with a client seed; then alice alone.
        status, state = await post(
            c, alice, tid, "bet", amount=10, request_id=rid(), client_seed="alice-1"
        )
        assert status == 200, state
        status, problem = await post(
            c, bob, tid, "bet", amount=10, request_id=rid(), client_seed="not, this"
        )
        assert status == 422 and problem["code"] == "validation_failed"
        bob_sock = await c.ws(bob)
        reply = await bob_sock.request(
            "publish", f"blackjack:{tid}", {"bet": 10, "request_id": rid(), "client_seed": 7}
        )
        assert reply["op"] == "error" and reply["code"] == "invalid_message", reply
        reply = await bob_sock.request(
            "publish", f"blackjack:{tid}", {"bet": 10, "request_id": rid()}
        )
        assert reply["op"] == "reply", reply
        state = reply["data"]["state"]
        assert state["shoe"]["client_seed"] == "3:alice-1", state
        await bob_sock.ws.close()
        await play_out(c, tid, tokens)
        assert (await post(c, bob, tid, "leave"))[0] == 200
        for _ in range(30):  # stand on every hand until the cut card retires the shoe
            if (await c.call("GET", f"/api/blackjack/tables/{tid}"))[1]["shoe"]["id"] != shoe_id:
                break
            status, state = await post(c, alice, tid, "bet", amount=10, request_id=rid())
            assert status == 200, state
            await play_out(c, tid, tokens)

        # A verifier without an account: anonymous HTTP only. The rounds name their shoe; the
        # retired shoe's document reveals its seed, client seed and the cards it dealt.
        _, history, _ = await c.call("GET", f"/api/blackjack/rounds?table_id={tid}&limit=200")
        rounds = [r for r in reversed(history["rounds"]) if r["shoe_id"] == shoe_id]
        status, shoe, _ = await c.call("GET", f"/api/blackjack/shoes/{shoe_id}")
        assert status == 200 and shoe["retired_at"] is not None, shoe
        seed, client_seed = bytes.fromhex(shoe["seed"]), shoe["client_seed"]
        assert commitment(seed) == committed == shoe["commitment"]
        assert client_seed == "3:alice-1"
        played = [card for r in rounds for card in cards_of(r)]
        assert len(played) == shoe["dealt"] and len(played) >= 13  # the cut card came out
        assert dealt(seed, client_seed, 1, shoe["dealt"]) == played, "each card as documented"
        assert shoe["order"] == shuffled(key(seed, client_seed, 0), 1)
        for count in (0, 52 * 3 + 7):  # the first shuffle; the shuffles after it too
            status, check, _ = await c.call(
                "POST", "/api/blackjack/verify",
                json={"seed": shoe["seed"], "commitment": committed, "decks": 1,
                      "client_seed": client_seed, "dealt": count},
            )  # fmt: skip
            expected = dealt(seed, client_seed, 1, count) if count else shoe["order"]
            assert status == 200 and check["order"] == expected
        # The shoe in use keeps its seed and counts no card before its first settled round.
        _, now, _ = await c.call("GET", f"/api/blackjack/tables/{tid}")
        status, current, _ = await c.call("GET", f"/api/blackjack/shoes/{now['shoe']['id']}")
        assert status == 200 and "seed" not in current and "order" not in current
        assert current["dealt"] == 0 and current["retired_at"] is None
        # The players' shoe_retired event says what the document says.
        retired: dict[str, Any] = {}
        while not retired:
            (event,) = await sock.events(1, timeout=30)
            if event["data"]["type"] == "shoe_retired":
                retired = event["data"]
        assert retired["shoe_id"] == shoe_id
        assert {k: retired[k] for k in ("seed", "commitment", "client_seed", "decks", "dealt")} == {
            k: shoe[k] for k in ("seed", "commitment", "client_seed", "decks", "dealt")
        }
        await sock.ws.close()
