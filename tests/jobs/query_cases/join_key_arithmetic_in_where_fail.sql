-- fail: join_key_only_in_join, column: pums.pid
SELECT COUNT(*) FROM pums WHERE pid + 0 > 100
