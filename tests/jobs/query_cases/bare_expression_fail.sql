-- fail: bad_sql
1 + 1
