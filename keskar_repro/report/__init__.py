"""Reporting: the figure scripts' runner (`experiment`), statistics over seeds (`stats`), the
paper's published numbers (`paper`) and the figures (`plots`)."""
