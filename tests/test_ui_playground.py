"""ftkit.ui.playground: the static result for the default text, the widget's result on a new text and slider value
(core ipywidgets, set from Python: the browser path is the same Output widget), and bad slider specs."""
import pytest

from ftkit.ui.playground import playground


def test_static_result_is_the_functions_on_the_default_text(capsys):
    assert playground(lambda t, k: f"{t.upper()} x{k}", "hi", sliders={"k": (1, 5, 1, 2)}, show="static") is None
    assert capsys.readouterr().out == "HI x2\n"


def test_the_widget_reruns_on_new_text_and_slider_values():
    calls = []
    ui = playground(lambda t, temperature: calls.append((t, temperature)) or f"{t}@{temperature}", "a",
                    sliders={"temperature": (0.1, 2.0, 0.1, 0.8)}, show="widget")
    box, (slider, button), out = ui.children[0], ui.children[1].children, ui.children[2]
    assert calls == [("a", 0.8)] and type(slider).__name__ == "FloatSlider"
    box.value = "b"
    slider.value = 1.5
    assert calls[-2:] == [("b", 0.8), ("b", 1.5)]


def test_bad_slider_spec_and_show_say_what_to_pass():
    with pytest.raises(ValueError, match=r"slider 'top_k': give \(min, max, step, value\)"):
        playground(lambda t, top_k: t, "a", sliders={"top_k": (1, 5, 1, 9)})
    with pytest.raises(ValueError, match="show must be 'auto', 'widget' or 'static'"):
        playground(lambda t: t, "a", show="yes")
