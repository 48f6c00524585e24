-- fail: single_select
COPY pums TO '/tmp/pums.csv'
