"""Views, one blueprint per feature; routes parse, call one service, render."""
