-- fail: single_select
CALL pragma_version()
