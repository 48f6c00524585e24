"""The analyst's pages: grants, the SQL editor and statistics form, jobs and their results."""
