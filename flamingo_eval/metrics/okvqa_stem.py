"""OK-VQA answer stemming, matching OpenFlamingo's OK-VQA evaluation (OK-VQA v1.1 procedure).

OK-VQA ground-truth answers are stemmed; predictions get the same treatment before VQA accuracy.
Each token of the Treebank-tokenised prediction (nltk ``word_tokenize``), POS-tagged with nltk's averaged
perceptron tagger, becomes:

1. its entry in a manual table (words the rules below get wrong, found from OK-VQA's
   ``raw_answers`` -> ``answers``), else
2. for a word ending in ``-ing``: its WordNet verb lemma (morphy; the shortest candidate), else
3. for a plural noun (tag ``NNS``/``NNPS``): ``inflection.singularize(word)``, else
4. itself.

Data needed at run time: nltk resources ``punkt_tab`` and ``averaged_perceptron_tagger_eng``, WordNet 3.0
(nltk ``wordnet`` or Debian's ``wordnet-base`` in /usr/share/wordnet) and the ``inflection`` package.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from flamingo_eval.errors import UserError

INSTALL_HINT = (
    "python -m nltk.downloader punkt_tab averaged_perceptron_tagger_eng wordnet "
    "(or set NLTK_DATA to a folder holding them; WordNet may also come from `apt-get install wordnet-base`)"
)
NLTK_RESOURCES = {
    "punkt_tab": "tokenizers/punkt_tab/english/",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng/",
}
WORDNET_DIRS = ("/usr/share/wordnet",)

# word -> stem expected by OK-VQA's stemming, where the automatic rules disagree (data, alphabetical).
_MANUAL = """
adhesives adhesive|alertness alert|alpes alp|apartments apart|are are|awning awn|backpackers backpack
badness bad|baldness bald|bases base|batter's batter|belongings belong|blindness blind|boy's boy
braves brave|brightness bright|browsing brows|buildings build|casings case|caves cave
charioteering chariot|childrens children|christmas christmas|circuses circus|clothes cloth
clothing cloth|coding code|conducter conduct|conferences confer|coniferous conifer|containers contain
controllers control|corgie corgi|couponing coupon|creame cream|crepte crept|cumulis cumuli
curiousity curious|dangerous danger|daughter's daughter|decorations decor|designers design|dining dine
directions direct|domino's domino|doves dove|drives drive|drunkenness drunken|earing ear|earnings earn
eatting eat|electicity elect|electronics electron|elevators elev|emirates emir|expressions express
farmer's farmer|firefighters firefight|firefighting firefight|glaced glace|gloves glove
gondoliere gondolier|graves grave|haircutting haircut|hamburgers hamburg|hawke hawk|hearding heard
hell's hell|hornes horn|illness ill|jeans jean|kid's kid|kindergartener kindergarten|kiting kite|las las
leaves leaf|lenses lens|lowes low|markings mark|married married|mating mate|meetings meet|men's men
microwaves microwave|minerals miner|mopeds mope|morning morn|mountainous mountain|mustange mustang
nationals nation|overseas oversea|oxygenize oxygen|paintings paint|paned pane|paring pare|pease peas
personals person|pies pie|piping pipe|plating plate|playfulness play|polarizing polar|police police
pooping poop|porche porch|potatoe potato|professionals profession|projections project|propellers propel
protesters protest|pudding pud|purring pure|quantas quanta|rabbies rabbi|raines rain|reflections reflect
regent's regent|reminders remind|reporters report|revelations revel|riding ride|ringe ring|ripeness ripe
rodeoing rodeo|routes rout|sadness sad|sautee saute|scrapbooking scrapbook|settings set|shelves shelve
sickness sick|skateboarders skateboard|smugness smug|socializing social|sometimes sometime|staring stare
stockings stock|striping stripe|sunbathing sunbath|sunblocker sunblock|suspenders suspend|swining swine
teasing teas|teething teeth|tenning ten|tennis tennis|texting text|ties tie|toileting toilet
tomatoe tomato|toppings top|transitions transit|travelers travel|travellers travel|urinating urine
vacationing vacate|vandalizers vandal|vastness vast|vegas vegas|veteran's veteran|wading wade|walle wall
waves wave|weddings wed|wetness wet|wilderness wilder|womens women|yes yes
"""
MANUAL_MATCHES: dict[str, str] = dict(
    pair.split() for line in _MANUAL.split("\n") for pair in line.split("|") if pair.strip()
)

# WordNet's morphological rules for verbs (suffix -> replacement), applied once each.
_VERB_RULES = (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", ""))  # noqa: E501  (one table line)


def _nltk_missing() -> list[str]:
    import nltk

    missing = []
    for name, path in NLTK_RESOURCES.items():
        try:
            nltk.data.find(path)
        except LookupError:
            missing.append(name)
    return missing


def _read_wordnet_file(name: str) -> list[str]:
    """Lines of a WordNet database file from nltk data, $WNSEARCHDIR or Debian's wordnet-base."""
    import nltk

    try:
        with nltk.data.find(f"corpora/wordnet/{name}").open() as fh:
            return fh.read().decode("utf-8").splitlines()
    except LookupError:
        pass
    dirs = [os.environ["WNSEARCHDIR"]] if os.environ.get("WNSEARCHDIR") else []
    for folder in [*dirs, *WORDNET_DIRS]:
        path = Path(folder) / name
        if path.is_file():
            return path.read_text(encoding="utf-8").splitlines()
    raise UserError(f"OK-VQA stemming needs WordNet ({name} not found); install it: {INSTALL_HINT}")


class VerbLemmatizer:
    """WordNet verb lemmatisation (morphy): exception list, else suffix rules; keep forms in WordNet.

    Returns the shortest candidate (first on ties), or the word itself when WordNet knows none, which is
    what nltk's ``WordNetLemmatizer().lemmatize(word, "v")`` returns.
    """

    def __init__(
        self, verbs: Iterable[str] | None = None, exceptions: dict[str, list[str]] | None = None
    ) -> None:
        """Create the lemmatizer; with no arguments, read WordNet's index.verb and verb.exc."""
        if verbs is None:
            verbs = (
                line.split(" ", 1)[0] for line in _read_wordnet_file("index.verb") if not line.startswith(" ")
            )
        if exceptions is None:
            exceptions = {}
            for line in _read_wordnet_file("verb.exc"):
                parts = line.split()
                if parts:
                    exceptions[parts[0]] = parts[1:]
        self._verbs = frozenset(verbs)
        self._exceptions = exceptions

    def candidates(self, word: str) -> list[str]:
        """All WordNet verb lemmas that ``word`` may be a form of, in morphy's order."""
        if word in self._exceptions:
            forms = list(self._exceptions[word])
        else:
            forms = [word[: -len(old)] + new for old, new in _VERB_RULES if word.endswith(old)]
        found: list[str] = []
        for form in [word, *forms]:
            if form in self._verbs and form not in found:
                found.append(form)
        return found

    def __call__(self, word: str) -> str:
        found = self.candidates(word)
        return min(found, key=len) if found else word


def _default_singularize() -> Callable[[str], str]:
    try:
        import inflection
    except ImportError:
        raise UserError("OK-VQA stemming needs the 'inflection' package: pip install inflection") from None
    return inflection.singularize


def _default_tagger() -> tuple[Callable[[str], list[str]], Callable[[list[str]], list[tuple[str, str]]]]:
    missing = _nltk_missing()
    if missing:
        raise UserError(f"OK-VQA stemming needs nltk data {', '.join(missing)}; install it: {INSTALL_HINT}")
    import nltk
    from nltk.tag import PerceptronTagger

    tagger = PerceptronTagger()
    return nltk.word_tokenize, tagger.tag


class OkvqaStemmer:
    """Stem a prediction the way OpenFlamingo does for OK-VQA (see the module docstring).

    All parts are injectable so the rules can be tested without nltk data.
    """

    def __init__(
        self,
        tokenize: Callable[[str], list[str]] | None = None,
        tag: Callable[[list[str]], list[tuple[str, str]]] | None = None,
        lemmatize_verb: Callable[[str], str] | None = None,
        singularize: Callable[[str], str] | None = None,
    ) -> None:
        """Create the stemmer; parts left as None are loaded from nltk / WordNet / inflection.

        Raises:
            UserError: when the nltk data, WordNet or ``inflection`` is missing.
        """
        if tokenize is None or tag is None:
            default_tokenize, default_tag = _default_tagger()
            tokenize = tokenize or default_tokenize
            tag = tag or default_tag
        self._tokenize = tokenize
        self._tag = tag
        self._lemmatize_verb = lemmatize_verb or VerbLemmatizer()
        self._singularize = singularize or _default_singularize()

    def stem_word(self, word: str, pos: str) -> str:
        """Stem one token given its Penn Treebank POS tag."""
        if word in MANUAL_MATCHES:
            return MANUAL_MATCHES[word]
        if word.endswith("ing"):
            return self._lemmatize_verb(word)
        if pos.startswith("NNS") or pos.startswith("NNPS"):
            return self._singularize(word)
        return word

    def stem(self, text: str) -> str:
        """Stem every token of ``text``; tokens are re-joined with single spaces."""
        tagged = self._tag(self._tokenize(text))
        return " ".join(self.stem_word(word, pos) for word, pos in tagged)
