"""The operator console (NiceGUI pages): see ui/pages.py."""
