"""Task-run ids of a `.map()`: derived from one batch id, unique, and readable as int or UUID alike."""
import uuid

from distributary import states as S
from distributary.runs import TaskRun, batch_run_ids


def _run(run_id):
    return TaskRun(run_id, None, "inc", "inc-key", None, {}, frozenset(), S.Pending(), 3)


def test_batch_ids_are_distinct_version_4_uuids():
    ids = batch_run_ids(1000) + batch_run_ids(1000)
    assert len(set(ids)) == 2000
    assert all(uuid.UUID(int=i).version == 4 for i in ids)


def test_id_int_matches_the_uuid_whether_or_not_it_was_made():
    (i,) = batch_run_ids(1)
    run = _run(i)
    assert run.id_int == i
    assert run._id == i  # reading the int did not make the UUID object
    assert run.id == uuid.UUID(int=i)
    assert run.id_int == i
    given = uuid.uuid4()
    assert _run(given).id_int == given.int
    assert _run(given).name == "inc-3"
