"""The embedded stack that ``ablate serve`` starts on one machine: child processes, their
supervision, the reaper, secret files and extra Ray nodes."""
