"""Short shop conversations, for the chat model (document sections 1 and 5: 智能对话, dialogue), and
the plain text of the same shop that the model is pre-trained on first.

Data card
---------
- **What**: multi-turn exchanges between a customer (the user) and a shop assistant. Each dialogue
  opens with the shop's list for the day, the *system* turn (``cups cost 7 yuan, 5 left; lamps cost
  12 yuan, none left; hats cost 3 yuan, 2 left.``: three of :data:`PRODUCTS`, a price of 1-19 yuan,
  0-9 in stock), then three exchanges. The user asks the price of a product, whether the shop has
  one (it may be sold out, or not on the list at all), and follows up with questions that name no
  product (``how many are left?``, ``how much are they?``, ``I will take 4.``): they refer back to
  the product of the previous exchange.
- **Why it needs the conversation**: no reply can be given from the user's turn alone. The price
  and the stock are on the list, which changes with every dialogue; whether ``do you have pens?``
  is answered with the stock, "sold out" or "we do not sell" depends on the list; a follow-up's
  product is the one asked about before; ``I will take 4.`` is granted or refused by comparing 4
  with the stock.
- **Reply kinds** (the ``kind`` of each exchange): ``price``, ``stock``, ``not sold`` (a product
  not on the list), and the follow-ups ``left``, ``price again``, ``take``.
- **Plain text** (:func:`make_documents`): the same shop described in sentences, without roles or
  turns (``the shop sells cups for 7 yuan and has 5 left. a customer asked about the lamps ...``):
  what a language model is pre-trained on before it sees a conversation.
- **How it was made**: :func:`make_dialogue` and :func:`make_document` here, seeded; nothing
  downloaded.
- **Size and splits**: :data:`SPLITS` distinct dialogues (train 4000, val 200, test 300), split by
  their whole text, so no test dialogue is in the training split; :data:`DOCUMENTS` plain-text
  documents (train 3000, val 200) drawn from their own seed.
- **Metric**: exact match of each assistant reply (SQuAD's normalisation: case, punctuation and
  articles ignored), with the conversation before it given as it was (teacher forcing); token F1
  beside it.
- **What it cannot teach**: a closed English vocabulary of about 70 tokens (a word outside it is
  refused), a dozen sentence templates, one shop; a model that does well here has learnt to look up
  and compare what the conversation said, not to talk.
"""
import numpy as np

from .common import draw_distinct, fixed_splits

SPLITS = {"train": 4000, "val": 200, "test": 300}
DOCUMENTS = {"train": 3000, "val": 200}
PRODUCTS = ["apples", "pears", "cups", "lamps", "books", "shirts", "hats", "pens", "bags", "plates",
            "socks", "clocks"]
ON_LIST, EXCHANGES = 3, 3
KINDS = ("price", "stock", "not sold", "left", "price again", "take")
FOLLOW_UPS = KINDS[3:]              # the exchanges whose user turn names no product


def make_list(rng: np.random.Generator) -> list[dict]:
    """The shop's list for one day: three products, each with a price (1-19 yuan) and a stock (0-9,
    sold out one time in four)."""
    names = rng.choice(PRODUCTS, ON_LIST, replace=False)
    return [{"name": str(n), "price": int(rng.integers(1, 20)),
             "stock": 0 if rng.random() < 0.25 else int(rng.integers(1, 10))} for n in names]


def list_text(items: list[dict]) -> str:
    """The system turn: ``cups cost 7 yuan, 5 left; lamps cost 12 yuan, none left; ...``."""
    return "; ".join(f"{i['name']} cost {i['price']} yuan, {i['stock'] or 'none'} left" for i in items) + "."


def _sold_out(item: dict) -> str:
    return f"sorry, the {item['name']} are sold out."


def _ask(rng: np.random.Generator, items: list[dict]) -> tuple[str, str, str, dict | None]:
    """An exchange that names its product: (kind, user, assistant, the product now talked about)."""
    if rng.random() < 0.2:                       # a product that is not on the list
        name = str(rng.choice([p for p in PRODUCTS if p not in {i["name"] for i in items}]))
        return "not sold", f"do you have {name}?", f"sorry, we do not sell {name}.", None
    item = items[int(rng.integers(len(items)))]
    if rng.random() < 0.5:
        return "price", f"how much are the {item['name']}?", f"the {item['name']} cost {item['price']} yuan.", item
    reply = f"yes, we have {item['stock']} {item['name']}." if item["stock"] else _sold_out(item)
    return "stock", f"do you have {item['name']}?", reply, item


def _follow_up(rng: np.random.Generator, item: dict) -> tuple[str, str, str, dict]:
    """An exchange that names no product: it means ``item``, the one asked about before."""
    kind = FOLLOW_UPS[int(rng.integers(len(FOLLOW_UPS)))]
    name, stock = item["name"], item["stock"]
    if kind == "left":
        return kind, "how many are left?", f"we have {stock} {name} left." if stock else _sold_out(item), item
    if kind == "price again":
        return kind, "how much are they?", f"the {name} cost {item['price']} yuan.", item
    n = int(rng.integers(1, 10))
    if not stock:
        reply = _sold_out(item)
    elif n <= stock:
        reply = f"here are {n} {name}."
    else:
        reply = f"sorry, we only have {stock} {name}."
    return kind, f"I will take {n}.", reply, item


def make_dialogue(rng: np.random.Generator) -> dict:
    """One dialogue: dict(system, turns=[(user, assistant), ...], kinds=[...])."""
    items = make_list(rng)
    turns, kinds, current = [], [], None
    for _ in range(EXCHANGES):
        if current is not None and rng.random() < 0.6:
            kind, user, reply, current = _follow_up(rng, current)
        else:
            kind, user, reply, current = _ask(rng, items)
        turns.append((user, reply))
        kinds.append(kind)
    return {"system": list_text(items), "turns": turns, "kinds": kinds}


def dialogue_key(d: dict) -> str:
    """The dialogue's whole text: two dialogues are the same example when it is the same."""
    return " | ".join([d["system"], *(f"{u} | {a}" for u, a in d["turns"])])


def make_dialogues(seed: int = 0, sizes: dict | None = None) -> dict[str, list[dict]]:
    """The fixed splits: split -> list of dialogues (distinct texts, none in two splits)."""
    sizes = dict(SPLITS if sizes is None else sizes)
    rng = np.random.default_rng([seed, 535])
    examples = draw_distinct(make_dialogue, rng, sum(sizes.values()), dialogue_key)
    return fixed_splits(examples, dialogue_key, sizes, [seed, 536])


def make_document(rng: np.random.Generator) -> str:
    """One plain-text description of a shop's day: its list in sentences, then three customers."""
    items = make_list(rng)
    sentences = [f"the shop sells {i['name']} for {i['price']} yuan and has {i['stock'] or 'none'} left."
                 for i in items]
    for _ in range(3):
        item = items[int(rng.integers(len(items)))]
        name = item["name"]
        if rng.random() < 0.5:
            sentences.append(f"a customer asked about the {name}. the {name} cost {item['price']} yuan.")
        elif item["stock"]:
            n = int(rng.integers(1, item["stock"] + 1))
            sentences.append(f"a customer took {n} {name}. there were {item['stock']} {name}.")
        else:
            sentences.append(f"a customer wanted {name}, but the {name} were sold out.")
    return " ".join(sentences)


def make_documents(seed: int = 0, sizes: dict | None = None) -> dict[str, list[str]]:
    """The plain text to pre-train on: split -> list of documents (distinct, none in two splits)."""
    sizes = dict(DOCUMENTS if sizes is None else sizes)
    rng = np.random.default_rng([seed, 537])
    examples = draw_distinct(make_document, rng, sum(sizes.values()), lambda d: d)
    return fixed_splits(examples, lambda d: d, sizes, [seed, 538])
