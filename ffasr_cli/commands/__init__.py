"""One module per ``ffasr`` command; ``common`` holds the options they share."""
