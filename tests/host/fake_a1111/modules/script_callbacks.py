"""Callbacks as in A1111's script_callbacks: on_* register (at a script's module level), *_callback fire them.

A1111 catches each callback's exception, prints it and goes on with the next one; so does this.
"""
from modules import errors

callback_map = {name: [] for name in
                ("app_started", "model_loaded", "ui_tabs", "ui_settings", "before_ui", "infotext_pasted",
                 "script_unloaded")}


def _add(name, fn):
    callback_map[name].append(fn)


def clear_callbacks():
    for fns in callback_map.values():
        fns.clear()


def _call(name, *args):
    results = []
    for fn in list(callback_map[name]):
        try:
            results.append(fn(*args))
        except Exception:
            errors.report(f"Error executing callback {name}_callback for {getattr(fn, '__module__', fn)}",
                          exc_info=True)
    return results


def app_started_callback(demo, app):
    _call("app_started", demo, app)


def ui_tabs_callback():
    res = []
    for tabs in _call("ui_tabs"):
        res += tabs or []
    return res


def ui_settings_callback():
    _call("ui_settings")


def before_ui_callback():
    _call("before_ui")


def script_unloaded_callback():
    _call("script_unloaded")


def on_app_started(callback, *, name=None):
    _add("app_started", callback)


def on_model_loaded(callback, *, name=None):
    _add("model_loaded", callback)


def on_ui_tabs(callback, *, name=None):
    _add("ui_tabs", callback)


def on_ui_settings(callback, *, name=None):
    _add("ui_settings", callback)


def on_before_ui(callback, *, name=None):
    _add("before_ui", callback)


def on_infotext_pasted(callback, *, name=None):
    _add("infotext_pasted", callback)


def on_script_unloaded(callback, *, name=None):
    _add("script_unloaded", callback)
