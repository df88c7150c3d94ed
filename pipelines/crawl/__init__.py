"""The scrape stage: a polite, bounded crawl of seed URLs into WARC files."""
