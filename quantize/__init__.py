
import logging as _logging

# NNCF imports torch.utils.cpp_extension, which warns "No CUDA runtime is found" on every CPU
# machine; NNCF's own INFO lines list every node it skips.  Neither is for the user's eyes.
_logging.getLogger("torch.utils.cpp_extension").setLevel(_logging.ERROR)
_logging.getLogger("nncf").setLevel(_logging.WARNING)
