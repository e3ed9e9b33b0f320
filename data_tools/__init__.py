"""data_tools: turn corrected answers and public preference layouts into dense preference datasets."""
