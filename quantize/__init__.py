
import logging as _logging

# NNCF imports torch.utils.cpp_extension, which warns "No CUDA runtime is found" on every CPU
# machine; NNCF's own INFO lines list every node it skips.  Neither is for the user's eyes.
_logging.getLogger("torch.utils.cpp_extension").setLevel(_logging.ERROR)


def quiet_nncf():
    """Import NNCF with its INFO chatter off (it sets its own level on import)."""
    import nncf
    from nncf.common.logging import nncf_logger

    nncf.set_log_level(_logging.WARNING)
    # NNCF's handler keeps the sys.stdout of its import time (closed later under test
    # runners); warnings go through logging's last-resort handler to the current stderr.
    nncf_logger.handlers.clear()
    nncf_logger.propagate = True
    return nncf
