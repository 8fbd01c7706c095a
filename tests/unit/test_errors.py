import pickle

import pytest

from byzerllm import errors


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_survives_pickling_with_its_details(name):
    cls = getattr(errors, name)
    err = cls("something failed", param="x", available=["a", "b"])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == "something failed"
    assert back.param == "x" and back.available == ["a", "b"]
    assert isinstance(back, errors.ByzerLLMError)
    assert 400 <= back.status_code < 600
