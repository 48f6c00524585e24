-- fail: bad_sql
EXPORT DATABASE '/tmp/dump'
