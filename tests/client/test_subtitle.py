"""The header's subtitle, from the Session's messages alone: the loaded model, or what is happening
to the model; the app tests check that it reaches the header."""

from types import SimpleNamespace

from tui.client import messages as m
from tui.client.subtitle import subtitle_for, with_waiting
from tui.wire.events import Loaded, LoadFailed, LoadStarted, ServerState, Unloaded

SESSION = SimpleNamespace(model="demo model", device="cpu", dtype="float32")


def state(**fields) -> ServerState:
    return ServerState(protocol=1, sdtui="0", pid=1, since=0.0, **fields)


def test_each_model_event_says_what_became_of_the_model():
    loaded = Loaded("tiny sd", "sd15", "cuda", "float16", 1.0, ())
    assert subtitle_for(m.Loaded(loaded), SESSION) == "tiny sd · cuda · float16"
    assert subtitle_for(m.LoadStarted(LoadStarted("tiny sd", "hub")), SESSION) == "loading tiny sd…"
    assert subtitle_for(m.Unloaded(Unloaded("tiny sd", None)), SESSION) == \
        "tiny sd unloaded; it loads again with the next job"
    assert subtitle_for(m.Unloaded(Unloaded("tiny sd", None, freed=3 * 1024**3)), SESSION) == \
        "tiny sd unloaded, 3.0 GB freed; it loads again with the next job"
    assert subtitle_for(m.LoadFailed(LoadFailed("x/y", "gone")), SESSION) == "no model loaded"
    assert subtitle_for(m.LoadFailed(LoadFailed("x/y", "gone", kept="demo")), SESSION) == "demo model · cpu · float32"
    assert subtitle_for(m.ServerLost("the sdtui server stopped"), SESSION) == "no sdtui server"


def test_connecting_names_the_servers_model_or_its_load_and_other_messages_leave_it_be():
    assert subtitle_for(m.Connected(state(model="tiny sd", device="mps", dtype="float16"), False), SESSION) == \
        "tiny sd · mps · float16"
    assert subtitle_for(m.Connected(state(loading=True), True), SESSION) == "loading a model…"
    assert subtitle_for(m.Connected(state(), True), SESSION) is None
    assert subtitle_for(m.QueueCleared(2), SESSION) is None


def test_a_waiting_load_replaces_the_one_said_before():
    first = with_waiting("demo model · cpu · float32", "x/y", 1)
    assert first == "demo model · cpu · float32 · waiting: x/y loads after 1 job"
    assert with_waiting(first, "the model with dtype float16", 2) == \
        "demo model · cpu · float32 · waiting: the model with dtype float16 loads after 2 jobs"
