"""Word vectors: finite-difference checks of both losses, the sampling distributions, co-occurrence
counts against a hand computation, training on corpora with known structure, and bad inputs."""
import numpy as np
import pytest
from matplotlib.figure import Figure

from npgpt import gradcheck
from npgpt.plots.text import plot_compression_curve, plot_word_projection
from npgpt.text.wordvec import (
    Vocab,
    WordVectors,
    cooccurrence,
    glove_loss_and_grads,
    glove_weight,
    keep_probabilities,
    noise_distribution,
    pca_2d,
    scatter_add,
    sgns_loss_and_grads,
    skipgram_pairs,
    subsample,
    tokenize_words,
    train_glove,
    train_word2vec,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------- gradients
def test_sgns_gradients_match_finite_differences(rng):
    B, K, D = 4, 3, 5
    params = {"v_c": rng.normal(0, 0.7, (B, D)), "u_o": rng.normal(0, 0.7, (B, D)),
              "u_neg": rng.normal(0, 0.7, (B, K, D))}
    _, (dv_c, du_o, du_neg) = sgns_loss_and_grads(**params)
    report = gradcheck(lambda: sgns_loss_and_grads(**params)[0], params,
                       {"v_c": dv_c, "u_o": du_o, "u_neg": du_neg})
    assert report.ok, report


def test_sgns_loss_is_the_formula(rng):
    v_c, u_o, u_neg = rng.normal(size=(1, 3)), rng.normal(size=(1, 3)), rng.normal(size=(1, 2, 3))
    sigma = lambda x: 1 / (1 + np.exp(-x))
    expected = -np.log(sigma(u_o[0] @ v_c[0])) - sum(np.log(sigma(-u @ v_c[0])) for u in u_neg[0])
    assert sgns_loss_and_grads(v_c, u_o, u_neg)[0] == pytest.approx(expected, rel=1e-12)
    # large scores do not overflow
    loss, grads = sgns_loss_and_grads(np.full((1, 1), 1e3), np.full((1, 1), -1.0), np.full((1, 1, 1), 1.0))
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)


def test_glove_gradients_match_finite_differences(rng):
    B, D = 6, 4
    params = {"w_i": rng.normal(0, 0.5, (B, D)), "w_j": rng.normal(0, 0.5, (B, D)),
              "b_i": rng.normal(0, 0.5, B), "b_j": rng.normal(0, 0.5, B)}
    x = rng.uniform(0.5, 200, B)
    fixed = {"log_x": np.log(x), "f": glove_weight(x)}
    _, (dw_i, dw_j, db_i, db_j) = glove_loss_and_grads(**params, **fixed)
    report = gradcheck(lambda: glove_loss_and_grads(**params, **fixed)[0], params,
                       {"w_i": dw_i, "w_j": dw_j, "b_i": db_i, "b_j": db_j})
    assert report.ok, report


def test_glove_weight_caps_at_one():
    np.testing.assert_allclose(glove_weight([1.0, 50.0, 100.0, 1e4]),
                               [0.01 ** 0.75, 0.5 ** 0.75, 1.0, 1.0])


# ----------------------------------------------------------------- sampling
def test_noise_distribution_is_unigram_to_the_three_quarters():
    counts = np.array([1000, 100, 10, 1])
    p = noise_distribution(counts)
    np.testing.assert_allclose(p, counts ** 0.75 / np.sum(counts ** 0.75))
    assert p.sum() == pytest.approx(1.0)
    unigram = counts / counts.sum()
    assert p[0] < unigram[0] and p[-1] > unigram[-1]     # flatter than the unigram distribution


def test_keep_probabilities_follow_the_paper():
    counts = np.array([900, 90, 9, 1])                   # shares 0.9, 0.09, 0.009, 0.001
    np.testing.assert_allclose(keep_probabilities(counts, sample=0.01),
                               [np.sqrt(0.01 / 0.9), np.sqrt(0.01 / 0.09), 1.0, 1.0])
    np.testing.assert_array_equal(keep_probabilities(counts, sample=0), np.ones(4))


def test_subsampling_keeps_rare_words_more_often():
    rng = np.random.default_rng(0)
    counts = np.array([50_000, 5_000, 500, 50])
    ids = rng.permutation(np.repeat(np.arange(4), counts))
    keep = keep_probabilities(counts, sample=1e-3)
    kept = np.bincount(subsample(ids, keep, rng), minlength=4) / counts
    assert kept[0] < kept[1] < kept[2] <= kept[3] == 1.0
    for k in range(4):   # within 4 standard deviations of the binomial
        assert abs(kept[k] - keep[k]) <= 4 * np.sqrt(keep[k] * (1 - keep[k]) / counts[k]) + 1e-12


def test_skipgram_pairs_full_window_by_hand():
    ids = np.array([10, 11, 12, 13])
    c, o = skipgram_pairs(ids, window=2)
    got = sorted(zip(c.tolist(), o.tolist()))
    expected = sorted([(10, 11), (11, 10), (11, 12), (12, 11), (12, 13), (13, 12),   # distance 1
                       (10, 12), (12, 10), (11, 13), (13, 11)])                        # distance 2
    assert got == expected


def test_skipgram_random_window_stays_inside_the_window():
    ids = np.arange(200)
    c, o = skipgram_pairs(ids, window=3, rng=np.random.default_rng(0))
    d = np.abs(c - o)
    assert d.min() >= 1 and d.max() <= 3
    counts = np.bincount(d)[1:]
    assert counts[0] > counts[1] > counts[2] > 0          # near pairs are more frequent


def test_scatter_add_equals_np_add_at(rng):
    rows = rng.integers(0, 7, size=50)                     # many repeats
    for shape, dtype in [((7, 5), np.float32), ((7, 5), np.float64), ((7,), np.float64)]:
        values = rng.normal(size=(50, *shape[1:])).astype(dtype)
        target, expected = np.ones(shape, dtype), np.ones(shape, dtype)
        scatter_add(target, rows, values)
        np.add.at(expected, rows, values)
        np.testing.assert_allclose(target, expected, rtol=1e-5)
    # a non-contiguous target still works (through np.add.at)
    base = np.zeros((7, 10))
    scatter_add(base[:, ::2], rows, np.ones((50, 5)))
    assert base[:, ::2].sum() == 250 and base[:, 1::2].sum() == 0
    with pytest.raises(ValueError, match="row 7 is out of range for a target with 7 rows"):
        scatter_add(np.zeros((7, 2)), [0, 7], np.ones((2, 2)))


# ----------------------------------------------------------------- words, vocabulary, co-occurrence
def test_tokenize_words_lowercases_and_keeps_inner_apostrophes():
    assert tokenize_words("To be, or NOT to be: 'tis o'er 3 times") == \
        ["to", "be", "or", "not", "to", "be", "tis", "o'er", "times"]


def test_vocab_orders_by_count_and_applies_min_count():
    vocab = Vocab(["b", "a", "c", "a", "b", "a", "d"], min_count=2)
    assert vocab.words == ["a", "b"] and vocab.counts.tolist() == [3, 2]
    np.testing.assert_array_equal(vocab.encode(["a", "c", "b", "d", "a"]), [0, 1, 0])   # c, d dropped


def test_cooccurrence_equals_a_hand_computation():
    # "a b c a" -> ids 0 1 2 0 (a is most frequent). Window 2, each pair adds 1/distance both ways:
    #   distance 1: (a,b) (b,c) (c,a)          -> +1 each
    #   distance 2: (a,c) (b,a)                -> +1/2 each
    vocab = Vocab(tokenize_words("a b c a"))
    rows, cols, x = cooccurrence(vocab.encode(tokenize_words("a b c a")), len(vocab), window=2)
    X = np.zeros((3, 3))
    X[rows, cols] = x
    expected = np.array([[0.0, 1.5, 1.5],     # a: b (1 + 1/2), c (1 + 1/2)
                         [1.5, 0.0, 1.0],     # b: a, c (1)
                         [1.5, 1.0, 0.0]])    # c: a, b
    np.testing.assert_allclose(X, expected)
    rows1, cols1, x1 = cooccurrence(vocab.encode(tokenize_words("a b c a")), len(vocab), window=1)
    assert sorted(zip(rows1.tolist(), cols1.tolist(), x1.tolist())) == \
        [(0, 1, 1.0), (0, 2, 1.0), (1, 0, 1.0), (1, 2, 1.0), (2, 0, 1.0), (2, 1, 1.0)]


# ----------------------------------------------------------------- training on known structure
FRUIT = ["apple", "banana", "cherry", "grape", "lemon", "mango"]
METAL = ["iron", "copper", "zinc", "tin", "lead", "nickel"]


def _two_cluster_text(seed=0, sentences=120, length=25):
    """Sentences drawn from one cluster at a time: words co-occur only within their cluster (except
    across the few sentence boundaries)."""
    rng = np.random.default_rng(seed)
    return "\n".join(" ".join(rng.choice(FRUIT if s % 2 else METAL, length)) for s in range(sentences))


def _same_cluster_nearest(wv):
    for cluster in (FRUIT, METAL):
        for word in cluster:
            assert wv.nearest(word, 1)[0][0] in cluster, (word, wv.nearest(word, 3))


def test_word2vec_puts_same_cluster_words_nearest():
    wv = train_word2vec(_two_cluster_text(), dim=8, window=2, min_count=1, sample=0, epochs=3,
                        batch_size=64, lr=0.05, seed=0)
    _same_cluster_nearest(wv)
    assert wv.history["epoch_loss"][-1] < wv.history["epoch_loss"][0]


def test_glove_puts_same_cluster_words_nearest():
    wv = train_glove(_two_cluster_text(), dim=8, window=3, min_count=1, epochs=30, batch_size=16, seed=0)
    _same_cluster_nearest(wv)
    assert wv.history["epoch_loss"][-1] < wv.history["epoch_loss"][0]


def _analogy_text(seed=0, sentences=600):
    """Four subjects on two axes: status (royal / common) and gender (male / female). Each sentence
    puts one subject among words of its status and of its gender, so king - man + woman = queen."""
    rng = np.random.default_rng(seed)
    status = {"royal": ["crown", "throne", "palace", "reign"], "common": ["field", "farm", "market", "cart"]}
    gender = {"male": ["he", "him", "his", "sir"], "female": ["she", "her", "hers", "madam"]}
    subjects = {"king": ("royal", "male"), "queen": ("royal", "female"),
                "man": ("common", "male"), "woman": ("common", "female")}
    lines = []
    for s in range(sentences):
        subject = list(subjects)[s % 4]
        st, ge = subjects[subject]
        context = list(rng.choice(status[st], 2)) + list(rng.choice(gender[ge], 2))
        lines.append(" ".join([*context[:2], subject, *context[2:]]))
    return "\n".join(lines)


@pytest.mark.parametrize("train", [
    lambda text: train_glove(text, dim=10, window=2, min_count=1, epochs=60, batch_size=16, seed=0),
    lambda text: train_word2vec(text, dim=6, window=2, min_count=1, sample=0, epochs=10, batch_size=32,
                                seed=0),
], ids=["glove", "word2vec"])
def test_analogy_on_a_constructed_corpus(train):
    wv = train(_analogy_text())
    assert wv.analogy("man", "king", "woman")[0][0] == "queen", wv.analogy("man", "king", "woman", k=3)
    assert wv.analogy("king", "man", "queen")[0][0] == "woman", wv.analogy("king", "man", "queen", k=3)


# ----------------------------------------------------------------- queries and projection
def _toy_vectors():
    vocab = Vocab(["a", "a", "a", "a", "b", "b", "b", "c", "c", "d"])
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    return WordVectors(vocab, vectors)


def test_nearest_is_cosine_order_without_the_word_itself():
    wv = _toy_vectors()
    got = wv.nearest("a", k=3)
    assert [w for w, _ in got] == ["b", "c", "d"]
    assert got[0][1] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    assert got[2][1] == pytest.approx(-1.0)
    assert wv.similarity("a", "c") == pytest.approx(0.0)


def test_centered_removes_the_shared_direction(rng):
    vocab = Vocab([f"w{i}" for i in range(20)])
    vectors = rng.normal(size=(20, 4)) + np.array([10.0, 0, 0, 0])    # a large common component
    wv = WordVectors(vocab, vectors)
    assert wv.similarity("w0", "w1") > 0.9
    centred = wv.centered()
    np.testing.assert_allclose(centred.vectors.mean(0), 0, atol=1e-12)
    a, b = vectors[0] - vectors.mean(0), vectors[1] - vectors.mean(0)
    assert centred.similarity("w0", "w1") == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_pca_2d_finds_the_main_direction(rng):
    t = rng.normal(size=50)
    X = np.outer(t, [1.0, 2.0, 2.0]) / 3 + 0.01 * rng.normal(size=(50, 3)) + 5.0
    coords, explained = pca_2d(X)
    assert coords.shape == (50, 2) and explained[0] > 0.99 and explained.sum() <= 1 + 1e-12
    assert abs(np.corrcoef(coords[:, 0], t)[0, 1]) > 0.999
    np.testing.assert_allclose(coords.mean(0), 0, atol=1e-12)


def test_word_projection_figure_is_saved(tmp_path):
    wv = _toy_vectors()
    words = ["a", "b", "c", "d"]
    coords, explained = wv.project(words)
    path = tmp_path / "sub" / "pca.png"
    fig = plot_word_projection(coords, words, groups=["x", "x", "y", "y"], explained=explained, path=path)
    assert isinstance(fig, Figure)
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in path.parent.iterdir()] == ["pca.png"]


def _label_boxes(fig):
    """The window extents of a projection figure's word labels (the text alone, not a leader line),
    after the layout has run."""
    from matplotlib.text import Text
    fig.draw_without_rendering()
    return [Text.get_window_extent(t) for t in fig.axes[0].texts]


def test_word_labels_overlap_neither_each_other_nor_the_points(rng):
    # a crowded cluster beside a few outliers, as in notebook 02's figure (its "family", "body" and
    # "time" words filled about this box): labels at one fixed offset from their points overlapped
    crowd = rng.uniform((-0.25, -0.5), (0.65, 0.1), (22, 2))
    coords = np.vstack([crowd, [[-1.5, 0.1], [1.2, 0.8], [0.1, 1.3], [-0.6, -0.7]]])
    words = ["daughter", "husband", "morning", "tongue", "mother", "sister", "night", "heart",
             "hand", "head", "face", "year", "wife", "time", "hour", "eyes", "day", "son", "father",
             "brother", "thee", "thy", "duke", "thou", "king", "you"]
    fig = plot_word_projection(coords, words, groups=["a"] * 13 + ["b"] * 13)
    boxes = _label_boxes(fig)
    assert len(boxes) == len(words)
    clashes = [(words[i], words[j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
               if boxes[i].overlaps(boxes[j])]
    assert not clashes, f"labels overlap: {clashes}"
    points = fig.axes[0].transData.transform(coords)
    covered = [(words[i], words[j]) for i, box in enumerate(boxes) for j, (x, y) in enumerate(points)
               if box.contains(x, y)]
    assert not covered, f"a label covers a point (label, point): {covered}"
    axes_box = fig.axes[0].get_window_extent()
    outside = [w for w, box in zip(words, boxes) if not (axes_box.contains(box.x0, box.y0)
                                                         and axes_box.contains(box.x1, box.y1))]
    assert not outside, f"labels outside the axes: {outside}"


def test_compression_figure_is_saved(tmp_path):
    fig = plot_compression_curve({"en": ([256, 512, 1024], [1.0, 2.1, 2.9])}, path=tmp_path / "c.png")
    assert isinstance(fig, Figure) and (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="equal length"):
        plot_compression_curve({"en": ([256, 512], [1.0])})


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("text", ["", "   \n", "123 456 !!!"])
@pytest.mark.parametrize("train", [train_word2vec, train_glove], ids=["word2vec", "glove"])
def test_empty_corpus_is_refused(train, text):
    with pytest.raises(ValueError, match="no words"):
        train(text, min_count=1)


@pytest.mark.parametrize("argument, value", [("dim", 0), ("window", 0), ("dim", -3), ("window", 1.5),
                                             ("epochs", 0), ("negative", 0)])
def test_bad_hyperparameters_are_named(argument, value):
    with pytest.raises(ValueError, match=f"{argument} must be a positive integer, got {value}"):
        train_word2vec("a b c", **{argument: value})
    if argument != "negative":
        with pytest.raises(ValueError, match=f"{argument} must be a positive integer, got {value}"):
            train_glove("a b c", **{argument: value})


def test_min_count_that_leaves_nothing_is_named():
    with pytest.raises(ValueError, match="min_count=5"):
        train_word2vec("a b c a", min_count=5)
    with pytest.raises(ValueError, match="min_count must be a positive integer, got 0"):
        Vocab(["a"], min_count=0)


def test_unknown_words_in_queries_are_named():
    wv = _toy_vectors()
    with pytest.raises(ValueError, match="'zebra' is not in the vocabulary"):
        wv.nearest("zebra")
    with pytest.raises(ValueError, match="'zebra' is not in the vocabulary"):
        wv.analogy("a", "zebra", "c")
    with pytest.raises(ValueError, match="'zebra' is not in the vocabulary"):
        wv.project(["a", "zebra"])
    with pytest.raises(ValueError, match="'zebra' is not in the vocabulary"):
        wv["zebra"]
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        wv.nearest("a", k=0)


def test_non_text_is_refused():
    with pytest.raises(ValueError, match="text must be a str, got list"):
        train_word2vec(["a", "b"])
