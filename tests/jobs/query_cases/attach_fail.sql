-- fail: single_select
ATTACH '/tmp/other.db' AS other
