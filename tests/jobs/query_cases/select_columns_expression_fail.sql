-- fail: select_star
SELECT MAX(COLUMNS('inc.*')) FROM pums
