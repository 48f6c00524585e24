-- fail: bad_sql
SELEKT race FROM pums
