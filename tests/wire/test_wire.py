"""The typed wire: every event in the registry travels by its fields and comes back as itself,
the server's state too, and the client has one message of the same name for each."""

import dataclasses
import json

import pytest
from PIL import Image

from tui.engine.events import Finished, Loaded, Step, Timings, Unloaded
from tui.engine.families import SDXL, ModelFamily
from tui.engine.memory import MemorySample
from tui.engine.request import GenerationRequest
from tui.wire import events as wire
from tui.wire.protocol import FrameReader, ProtocolError, encode_frame

MEMORY = MemorySample(1 << 30, 2 << 30, 16 << 30, 3 << 30, 8 << 30, 24 << 30, 0, device_unlimited=True)
REQUEST = GenerationRequest("a fox", "blurry", 12, 5.5, 64, 48, seed=2**64 - 2, count=2, init_image="/a b.png",
                            strength=0.4, hires=1.5)
TIMINGS = Timings(0.5, 0.2, 1.5, 9.5, 1234)
PICTURE = Image.effect_noise((16, 12), 80).convert("RGB")


def example(cls: type):
    """An instance of event class ``cls`` with every field set away from its default."""
    made = {
        Step: lambda: Step(1, 3, 20, 1.5, 0.1, 10.0, MEMORY, PICTURE),
        Finished: lambda: Finished(PICTURE, 1, 99, REQUEST, TIMINGS, {"torch": "2.13", "loras": ["ink"]}),
        Loaded: lambda: Loaded("owner/model", "SDXL", "mps", "float16", 2.5, ("attention slicing: on (64 GB)",),
                               ModelFamily(SDXL, turbo=True, native_size=1024), MEMORY, "owner/model"),
        Unloaded: lambda: Unloaded("owner/model", MEMORY),
        wire.ImageSaved: lambda: wire.ImageSaved("/out/fox.png", 1, 99, REQUEST, TIMINGS, {"torch": "2.13"}),
        wire.Queued: lambda: wire.Queued(REQUEST, "generate"),
        wire.JobDone: lambda: wire.JobDone(7, 2, "cancelled", "cancelled after 2 images"),
        wire.ClientsChanged: lambda: wire.ClientsChanged(("app", "generate"), came="generate"),
    }
    if cls in made:
        return made[cls]()
    values = {}
    hints = wire._hints(cls)
    for f in dataclasses.fields(cls):
        hint = str(hints[f.name])
        values[f.name] = (REQUEST if "GenerationRequest" in hint else 3 if "int" in hint else True if "bool" in hint
                          else f"{f.name} text")
    return cls(**values)


def travelled(event, job=5):
    message, payload = wire.encode_event(event, job)
    json.dumps(message)  # only JSON's own types
    frames = FrameReader().feed(encode_frame(message, payload))
    assert len(frames) == 1 and frames[0][0]["job"] == job
    return wire.decode_event(*frames[0])


@pytest.mark.parametrize("name", sorted(wire.EVENTS))
def test_every_event_comes_back_as_itself(name):
    cls = wire.EVENTS[name]
    event = example(cls)
    again = travelled(event)
    assert type(again) is cls
    for f in dataclasses.fields(cls):
        before, after = getattr(event, f.name), getattr(again, f.name)
        if isinstance(before, Image.Image):
            assert after.size == before.size and after.tobytes() == before.tobytes()
        else:
            assert after == before, f.name


def test_an_event_without_its_picture_has_none_and_no_payload():
    step = Step(0, 1, 4, 0.1, 0.1, 10.0, MEMORY, None)
    message, payload = wire.encode_event(step, 1)
    assert payload == b"" and message["preview"] is None
    assert travelled(step).preview is None


def test_the_servers_state_comes_back_typed():
    state = wire.ServerState(5, "0.1.0", 1234, 1.0e9, model="owner/model", device="mps", dtype="float16",
                             family_info=ModelFamily(SDXL), running=3, waiting=(4, 5), running_step=(2, 20),
                             history_notice="adopted 2 images")
    message = wire.encode_state(state, "welcome")
    assert message["type"] == "welcome"
    assert wire.decode_state(json.loads(json.dumps(message))) == state


def test_a_peer_that_sends_more_fields_is_understood_and_one_that_sends_an_unknown_event_is_refused():
    message, payload = wire.encode_event(wire.JobDone(3, 1), 3)
    assert wire.decode_event({**message, "from_a_newer_sdtui": 1}, payload) == wire.JobDone(3, 1)
    with pytest.raises(ProtocolError, match="does not know"):
        wire.decode_event({"type": "event", "event": "Teleported", "job": 1})
    with pytest.raises(ProtocolError, match="does not fit"):
        wire.decode_event({"type": "event", "event": "JobDone", "job": 1})  # no number
    with pytest.raises(TypeError):
        wire.encode_event(object(), 1)


def test_each_event_has_the_client_message_of_its_own_name():
    from tui.client import messages

    for event in wire.EVENTS.values():
        message = messages.message_for(event)
        assert message.__name__ == event.__name__ and issubclass(message, messages.ServerEvent)
    with pytest.raises(KeyError):
        messages.message_for(messages.ServerEvent)  # a class of the same module, not an event


def test_the_other_clients_hear_who_came_and_went_but_not_of_status(tmp_path):
    """A server event added as one dataclass: ClientsChanged, through the real server and socket."""
    from tests.scripted_engine import ScriptedEngine
    from tests.wire_helpers import events_until
    from tui.client.connection import connect
    from tui.locations import Locations
    from tui.server.host import stand_up

    host = stand_up(Locations(tmp_path, tmp_path), engine=ScriptedEngine(), keep_alive_s=-1, idle_exit_s=-1).start()
    try:
        with connect(tmp_path, "app") as app:
            with connect(tmp_path, "generate"):
                came = events_until(app, "ClientsChanged", limit=10.0)
                assert wire.decode_event(came[-1]) == wire.ClientsChanged(("app", "generate"), came="generate")
                with connect(tmp_path, "status"):
                    pass
            left = events_until(app, "ClientsChanged", limit=10.0)
            assert wire.decode_event(left[-1]) == wire.ClientsChanged(("app",), left="generate"), \
                "status is never counted"
            assert [m["event"] for m in left].count("ClientsChanged") == 1
    finally:
        host.stop(wait_s=5)


@pytest.mark.asyncio
async def test_the_app_says_when_another_app_shares_its_server(sdtui_home):
    from tests.app_helpers import make_app, wait_connected, wait_for
    from tests.scripted_engine import scripted
    from tui.client.connection import connect
    from tui.client.widgets.log import LogPanel

    app = make_app(engine=scripted())
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_connected(pilot, app)
        log = app.main_screen.query_one(LogPanel)
        said = lambda words: any(words in line for line in log.lines_written)  # noqa: E731
        with connect(app.places.data_dir, "app"):
            await wait_for(pilot, lambda: said("another sdtui app connected to this server (2 now)"), timeout=10)
            assert app.session.clients == ("app", "app")
        await wait_for(pilot, lambda: said("another sdtui app left this server"), timeout=10)
        assert app.session.clients == ("app",)
