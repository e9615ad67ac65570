"""The backtrace filter: hides the frames of pyref's Python.h shim (pyref_incref,
pyref_decref, the C-API wrappers: inline functions every traced refcount operation adds
to a backtrace) so that `bt` reads as it does in an untraced build. What a shim frame is
is inferior/cframes.py's is_shim_frame; `set pyref shim-frames on` shows them again, and
so does GDB's own `disable frame-filter global pyref-shim-frames` (the two stay in step).
Only backtraces are filtered: `frame N`, `up` and `down` still reach every frame."""
import gdb

from pyref.commands import settings
from pyref.inferior import cframes

NAME = "pyref-shim-frames"


class ShimFrameFilter:
    """A GDB frame filter (gdb.frame_filters) that drops shim frames."""

    name = NAME
    priority = 100

    @property
    def enabled(self):
        return not settings.shim_frames()

    @enabled.setter
    def enabled(self, value):  # `enable/disable frame-filter global pyref-shim-frames`
        settings.set_shim_frames(not value)

    def filter(self, frame_iter):
        return (d for d in frame_iter if not cframes.is_shim_frame(d.inferior_frame()))


def register():
    """Installs the filter (once: registering twice replaces it with an equal one)."""
    gdb.frame_filters[NAME] = ShimFrameFilter()
