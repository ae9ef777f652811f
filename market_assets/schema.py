"""Column names of the Kaggle "Stock Market Dataset" and of the stages built from it.

One place for the names, so the Spark and polars code, the model and the web service agree.
"""

SYMBOL = "Symbol"
SECURITY_NAME = "Security Name"
DATE = "Date"
OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE = "Open", "High", "Low", "Close", "Adj Close"
VOLUME = "Volume"
PRICE_COLUMNS = (OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE)

# Every per-symbol CSV (etfs/SYM.csv, stocks/SYM.csv) has exactly this header.
CSV_HEADER = (DATE, *PRICE_COLUMNS, VOLUME)
# symbols_valid_meta.csv
META_COLUMNS = (
    "Nasdaq Traded",
    SYMBOL,
    SECURITY_NAME,
    "Listing Exchange",
    "Market Category",
    "ETF",
    "Round Lot Size",
    "Test Issue",
    "Financial Status",
    "CQS Symbol",
    "NASDAQ Symbol",
    "NextShares",
)
META_FILE = "symbols_valid_meta.csv"
FOLDERS = ("etfs", "stocks")

# The stage-1 dataset (stock_prices): Date is a date, prices doubles, Volume a 64-bit integer.
PRICES_COLUMNS = (SYMBOL, SECURITY_NAME, DATE, *PRICE_COLUMNS, VOLUME)

# Stage 2 (stock_features) adds these, over the current trading day and the 29 before it.
WINDOW_DAYS = 30
VOL_MOVING_AVG = "vol_moving_avg"
ADJ_CLOSE_ROLLING_MED = "adj_close_rolling_med"
FEATURES = (VOL_MOVING_AVG, ADJ_CLOSE_ROLLING_MED)
TARGET = VOLUME
